package dataplane

import (
	"net"
	"sync"
	"time"
)

// coalescingConn merges the small writes an HTTP/2 connection makes in one burst of work into
// one write. net/http's HTTP/2 client flushes a request's HEADERS before it sends the DATA,
// and its server flushes a response's HEADERS, its DATA and the WINDOW_UPDATEs apart: on a
// mesh connection each flush is a TLS record and a system call, and each system call on the
// loopback or a veth runs the receiver's network stack too (BENCHMARKS.md: half of a proxy's
// CPU under load was in write(2)).
//
// A small write is appended to a buffer, and a goroutine started by the first of a burst
// writes the buffer out. With one worker (GOMAXPROCS=1, a sidecar's default) that goroutine
// runs once the goroutine that wrote has finished its work and waits, so the HEADERS and DATA
// of a request, or a response and the window updates sent while it was made, leave in one
// record. With more workers it still batches whatever accumulates while a write is under way.
//
// Order is kept: every write to the connection takes the pending bytes first. (Callers do
// not call Write concurrently: net/http's HTTP/2 code serializes its frame writes.) A write of
// coalesceDirectBytes or more, or one that would make the buffer exceed coalesceMaxPending,
// goes to the connection at once (after the pending bytes), under its caller's write
// deadline: a slow peer still blocks the writer. The buffered bytes are written under the
// latest write deadline set while they were buffered. An error writing them closes the
// connection (the HTTP/2 code then sees the failure on its next read or write).
//
// A write of nothing but connection-level WINDOW_UPDATE frames (a receiver gives one back per
// 4 KiB it consumed: with 1 KiB messages, every fourth request or response) is held for the
// next write, at most windowUpdateHold: it then leaves with the next request or response
// instead of in a write of its own. The connection's window (4 MiB) dwarfs what a peer sends in
// that time; stream-level updates, which bound one stream's flow, are never held.
type coalescingConn struct {
	net.Conn

	// writing is held (a token in the channel) while bytes are written to Conn.
	writing chan struct{}
	// connDeadline is the write deadline last set on Conn (guarded by writing).
	connDeadline time.Time

	mu            sync.Mutex
	pending       []byte
	spare         []byte    // the previous batch's buffer, reused
	deadline      time.Time // write deadline set by the HTTP/2 code
	batchDeadline time.Time // the latest non-zero deadline while pending filled
	scheduled     bool      // a flush goroutine will take pending
	held          bool      // pending is window updates waiting for the next write
	holdTimer     *time.Timer
	err           error // sticky: a failed write or Close
}

const (
	coalesceDirectBytes = 16 << 10
	coalesceMaxPending  = 64 << 10
	// coalesceCloseWait bounds how long Close waits for a write under way, to write what is
	// still buffered (an HTTP/2 GOAWAY written just before Close).
	coalesceCloseWait = 250 * time.Millisecond
	// windowUpdateHold bounds how long connection window updates wait for the next write.
	windowUpdateHold = 2 * time.Millisecond
)

func newCoalescingConn(c net.Conn) *coalescingConn {
	return &coalescingConn{Conn: c, writing: make(chan struct{}, 1)}
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if len(p) >= coalesceDirectBytes || len(c.pending)+len(p) > coalesceMaxPending {
		deadline := c.deadline
		c.mu.Unlock()
		return c.writeThrough(p, deadline)
	}
	// pending is empty or held while no flush is scheduled.
	hold := !c.scheduled && (len(c.pending) == 0 || c.held) && onlyConnWindowUpdates(p)
	c.pending = append(c.pending, p...)
	if c.deadline.After(c.batchDeadline) {
		c.batchDeadline = c.deadline
	}
	switch {
	case c.scheduled:
	case hold:
		if !c.held {
			c.held = true
			if c.holdTimer == nil {
				c.holdTimer = time.AfterFunc(windowUpdateHold, c.releaseHeld)
			} else {
				c.holdTimer.Reset(windowUpdateHold)
			}
		}
	default:
		c.held = false
		c.scheduled = true
		go c.flush()
	}
	c.mu.Unlock()
	return len(p), nil
}

// releaseHeld writes out window updates that no other write took along in time.
func (c *coalescingConn) releaseHeld() {
	c.mu.Lock()
	if !c.held || c.scheduled {
		c.mu.Unlock()
		return
	}
	c.held = false
	c.scheduled = true
	c.mu.Unlock()
	c.flush()
}

// windowUpdateFrameLen is an HTTP/2 WINDOW_UPDATE frame's size: a 9-byte header and the
// 4-byte increment.
const windowUpdateFrameLen = 13

// onlyConnWindowUpdates reports whether p is one or more whole WINDOW_UPDATE frames of the
// connection (stream 0).
func onlyConnWindowUpdates(p []byte) bool {
	if len(p) == 0 || len(p)%windowUpdateFrameLen != 0 {
		return false
	}
	for ; len(p) > 0; p = p[windowUpdateFrameLen:] {
		// Length 4, type 0x8 (WINDOW_UPDATE), any flags, stream identifier 0.
		if p[0] != 0 || p[1] != 0 || p[2] != 4 || p[3] != 0x8 || p[5]&0x7f != 0 || p[6] != 0 || p[7] != 0 || p[8] != 0 {
			return false
		}
	}
	return true
}

// writeThrough writes the pending bytes and then p to the connection, p under deadline.
func (c *coalescingConn) writeThrough(p []byte, deadline time.Time) (int, error) {
	c.writing <- struct{}{}
	defer func() { <-c.writing }()
	buf, batchDeadline := c.take()
	if len(buf) > 0 {
		if err := c.writeOut(buf, batchDeadline); err != nil {
			return 0, err
		}
	}
	if err := c.setConnDeadline(deadline); err != nil {
		return 0, c.fail(err)
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		return n, c.fail(err)
	}
	return n, nil
}

// flush writes out what is pending.
func (c *coalescingConn) flush() {
	c.writing <- struct{}{}
	defer func() { <-c.writing }()
	c.mu.Lock()
	c.scheduled = false
	c.mu.Unlock()
	if buf, deadline := c.take(); len(buf) > 0 {
		_ = c.writeOut(buf, deadline)
	}
}

// take returns the pending bytes and their deadline, leaving an empty buffer. The caller
// holds writing.
func (c *coalescingConn) take() ([]byte, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf, deadline := c.pending, c.batchDeadline
	c.pending, c.spare, c.batchDeadline = c.spare[:0], nil, time.Time{}
	c.held = false
	return buf, deadline
}

// writeOut writes buf, taken from pending, under deadline, and keeps the buffer for reuse.
// The caller holds writing.
func (c *coalescingConn) writeOut(buf []byte, deadline time.Time) error {
	err := c.setConnDeadline(deadline)
	if err == nil {
		_, err = c.Conn.Write(buf)
	}
	c.mu.Lock()
	if c.spare == nil && cap(buf) <= coalesceDirectBytes {
		c.spare = buf[:0]
	}
	c.mu.Unlock()
	if err != nil {
		return c.fail(err)
	}
	return nil
}

// setConnDeadline sets Conn's write deadline when it differs from the last one set. The
// caller holds writing.
func (c *coalescingConn) setConnDeadline(t time.Time) error {
	if t.Equal(c.connDeadline) {
		return nil
	}
	c.connDeadline = t
	return c.Conn.SetWriteDeadline(t)
}

// fail records err for later writes and closes the connection, so that the HTTP/2 code,
// which may wait for an answer to the bytes that were lost, learns of it from its reads.
func (c *coalescingConn) fail(err error) error {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.Conn.Close()
	return err
}

func (c *coalescingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *coalescingConn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

// Close writes what is still buffered (waiting at most coalesceCloseWait for a write under
// way, and giving the bytes as long again) and closes the connection.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.holdTimer != nil {
		c.holdTimer.Stop()
	}
	c.mu.Unlock()
	timer := time.NewTimer(coalesceCloseWait)
	defer timer.Stop()
	select {
	case c.writing <- struct{}{}:
		c.mu.Lock()
		buf, failed := c.pending, c.err != nil
		c.pending = nil
		if c.err == nil {
			c.err = net.ErrClosed
		}
		c.mu.Unlock()
		if len(buf) > 0 && !failed {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(coalesceCloseWait))
			_, _ = c.Conn.Write(buf)
		}
		<-c.writing
	case <-timer.C:
		c.mu.Lock()
		if c.err == nil {
			c.err = net.ErrClosed
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}
