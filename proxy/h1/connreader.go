package h1

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// errClientGone is the cause of a request context cancelled because the client closed or
// reset its connection.
var errClientGone = errors.New("h1: the client closed the connection")

// aLongTimeAgo is a read deadline in the past: it wakes a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// clientGoneWatchDelay is how long a request runs, its body read, before its connection is
// watched for the client going away. Most requests a sidecar carries end sooner, and the
// watch costs a goroutine, a read that finds nothing and waking that read again: a request
// whose client leaves earlier runs to its end, at most this long.
const clientGoneWatchDelay = 5 * time.Millisecond

// connReader sits between the connection and its bufio.Reader. While a request body is
// read it re-arms the read deadline before every read (the body read timeout); once the
// body is done, and the request has run clientGoneWatchDelay, it reads one byte in the
// background, as net/http does, so that a client that goes away cancels the request's
// context. That byte, if any, is returned first.
type connReader struct {
	conn net.Conn

	mu      sync.Mutex
	cond    sync.Cond
	watch   *time.Timer // starts the background read after clientGoneWatchDelay
	armed   bool        // watch is set and the background read not yet started
	inRead  bool        // a background read is running
	aborted bool        // the background read was woken on purpose
	hasByte bool        // b holds a byte the background read got
	b       [1]byte
	err     error // what the background read failed with: every later read fails with it
	cancel  context.CancelCauseFunc

	timeout time.Duration // per-read deadline while reading a body; 0 otherwise
}

func newConnReader(c net.Conn) *connReader {
	cr := &connReader{conn: c}
	cr.cond.L = &cr.mu
	return cr
}

// Read returns the byte read in the background first, then reads the connection.
func (cr *connReader) Read(p []byte) (int, error) {
	cr.mu.Lock()
	if cr.inRead {
		cr.mu.Unlock()
		return 0, errors.New("h1: concurrent read of a connection")
	}
	if cr.hasByte && len(p) > 0 {
		p[0] = cr.b[0]
		cr.hasByte = false
		cr.mu.Unlock()
		return 1, nil
	}
	if cr.err != nil {
		err := cr.err
		cr.mu.Unlock()
		return 0, err
	}
	timeout := cr.timeout
	cr.mu.Unlock()
	if timeout > 0 {
		_ = cr.conn.SetReadDeadline(time.Now().Add(timeout))
	}
	return cr.conn.Read(p)
}

// setBodyTimeout makes every later read wait at most d (0: no deadline, cleared now).
func (cr *connReader) setBodyTimeout(d time.Duration) {
	cr.mu.Lock()
	cr.timeout = d
	cr.mu.Unlock()
	if d == 0 {
		_ = cr.conn.SetReadDeadline(time.Time{})
	}
}

// startBackgroundRead watches the idle connection, from clientGoneWatchDelay on: when the
// client closes or resets it, cancel is called. Only call it when nothing else reads the
// connection until abortPendingRead.
func (cr *connReader) startBackgroundRead(cancel context.CancelCauseFunc) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.inRead || cr.armed || cr.hasByte || cr.err != nil {
		return
	}
	cr.timeout = 0
	cr.armed, cr.cancel = true, cancel
	if cr.watch == nil {
		cr.watch = time.AfterFunc(clientGoneWatchDelay, cr.startArmedRead)
	} else {
		cr.watch.Reset(clientGoneWatchDelay)
	}
}

// startArmedRead starts the background read startBackgroundRead armed, unless
// abortPendingRead came first.
func (cr *connReader) startArmedRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if !cr.armed {
		return
	}
	cr.armed = false
	_ = cr.conn.SetReadDeadline(time.Time{})
	cr.inRead = true
	go cr.backgroundRead()
}

func (cr *connReader) backgroundRead() {
	n, err := cr.conn.Read(cr.b[:])
	cr.mu.Lock()
	if n == 1 {
		cr.hasByte = true
	}
	if err != nil && (!cr.aborted || !errors.Is(err, os.ErrDeadlineExceeded)) {
		cr.err = err
		if cr.cancel != nil {
			cr.cancel(errClientGone)
		}
	}
	cr.aborted, cr.inRead, cr.cancel = false, false, nil
	cr.cond.Broadcast()
	cr.mu.Unlock()
}

// abortPendingRead stops a background read and waits for it to end.
func (cr *connReader) abortPendingRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	cr.cancel = nil
	if cr.armed {
		cr.armed = false
		cr.watch.Stop()
	}
	if !cr.inRead {
		return
	}
	cr.aborted = true
	_ = cr.conn.SetReadDeadline(aLongTimeAgo)
	for cr.inRead {
		cr.cond.Wait()
	}
	_ = cr.conn.SetReadDeadline(time.Time{})
}
