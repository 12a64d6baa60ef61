package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// recordingConn records what is written to it and the write deadline of each write.
type recordingConn struct {
	net.Conn // nil: only the methods below are used

	mu        sync.Mutex
	writes    []string
	deadlines []time.Time
	deadline  time.Time
	closed    chan struct{}
	failWith  error
	blockOn   chan struct{} // when set, writes wait for it (or Close)
}

func newRecordingConn() *recordingConn { return &recordingConn{closed: make(chan struct{})} }

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	block, fail := c.blockOn, c.failWith
	c.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	if fail != nil {
		return 0, fail
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, string(p))
	c.deadlines = append(c.deadlines, c.deadline)
	return len(p), nil
}

func (c *recordingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *recordingConn) SetReadDeadline(time.Time) error { return nil }

func (c *recordingConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

func (c *recordingConn) written() ([]string, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...), append([]time.Time(nil), c.deadlines...)
}

// waitWrites waits until the connection got n writes.
func (c *recordingConn) waitWrites(t *testing.T, n int) []string {
	t.Helper()
	var w []string
	waitFor(t, fmt.Sprintf("%d writes to the connection", n), func() bool {
		w, _ = c.written()
		return len(w) >= n
	})
	return w
}

// TestCoalescingConnMergesABurst: the writes made while a write is pending leave in one, in
// order (the test holds the write token the flushing goroutine needs, as a busy worker
// would keep it from running).
func TestCoalescingConnMergesABurst(t *testing.T) {
	rc := newRecordingConn()
	c := newCoalescingConn(rc)
	c.writing <- struct{}{}
	for _, s := range []string{"HEADERS ", "DATA ", "WINDOW_UPDATE"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	<-c.writing
	if w := rc.waitWrites(t, 1); len(w) != 1 || w[0] != "HEADERS DATA WINDOW_UPDATE" {
		t.Fatalf("the connection got %q; want one write of the three", w)
	}
	// The next burst reuses the buffer and is written on its own.
	c.writing <- struct{}{}
	_, _ = c.Write([]byte("next"))
	<-c.writing
	if w := rc.waitWrites(t, 2); len(w) != 2 || w[1] != "next" {
		t.Fatalf("the connection got %q; want the second burst apart", w)
	}
}

// TestCoalescingConnLargeWriteKeepsOrder: a large write goes to the connection itself, after
// the bytes buffered before it, under its caller's deadline.
func TestCoalescingConnLargeWriteKeepsOrder(t *testing.T) {
	rc := newRecordingConn()
	c := newCoalescingConn(rc)
	c.writing <- struct{}{}
	_, _ = c.Write([]byte("small"))
	large := strings.Repeat("x", coalesceDirectBytes)
	deadline := time.Now().Add(time.Minute)
	_ = c.SetWriteDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte(large))
		done <- err
	}()
	<-c.writing
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w := rc.waitWrites(t, 2)
	if len(w) != 2 || w[0] != "small" || w[1] != large {
		t.Fatalf("writes of %d bytes %v; want 5 then %d", len(w), lens(w), len(large))
	}
	if _, d := rc.written(); !d[1].Equal(deadline) {
		t.Errorf("the large write had deadline %v; want its caller's %v", d[1], deadline)
	}
}

func lens(w []string) []int {
	var n []int
	for _, s := range w {
		n = append(n, len(s))
	}
	return n
}

// TestCoalescingConnBatchDeadline: buffered bytes are written under the deadline set when
// they were written (net/http's HTTP/2 server sets one before each write and clears it
// after), and writes without one are written without.
func TestCoalescingConnBatchDeadline(t *testing.T) {
	rc := newRecordingConn()
	c := newCoalescingConn(rc)
	deadline := time.Now().Add(30 * time.Second)
	c.writing <- struct{}{}
	_ = c.SetWriteDeadline(deadline)
	_, _ = c.Write([]byte("frame"))
	_ = c.SetWriteDeadline(time.Time{})
	<-c.writing
	rc.waitWrites(t, 1)
	c.writing <- struct{}{}
	_, _ = c.Write([]byte("no deadline"))
	<-c.writing
	rc.waitWrites(t, 2)
	if _, d := rc.written(); !d[0].Equal(deadline) || !d[1].IsZero() {
		t.Fatalf("deadlines %v; want %v then none", d, deadline)
	}
}

// TestCoalescingConnWriteErrorCloses: a failed write of buffered bytes closes the connection
// (so the HTTP/2 code sees it in its reads) and fails every later write.
func TestCoalescingConnWriteErrorCloses(t *testing.T) {
	rc := newRecordingConn()
	broken := errors.New("connection reset by peer")
	rc.failWith = broken
	c := newCoalescingConn(rc)
	_, _ = c.Write([]byte("lost"))
	select {
	case <-rc.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not closed after its write failed")
	}
	if _, err := c.Write([]byte("later")); !errors.Is(err, broken) {
		t.Fatalf("a later write: %v; want %v", err, broken)
	}
}

// TestCoalescingConnCloseWritesPending: what is buffered when Close is called (a GOAWAY) is
// written before the connection closes.
func TestCoalescingConnCloseWritesPending(t *testing.T) {
	rc := newRecordingConn()
	c := newCoalescingConn(rc)
	_, _ = c.Write([]byte("GOAWAY"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if w, _ := rc.written(); len(w) != 1 || w[0] != "GOAWAY" {
		t.Fatalf("before closing the connection got %q; want the GOAWAY", w)
	}
	if _, err := c.Write([]byte("after")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a write after Close: %v; want net.ErrClosed", err)
	}
}

// TestCoalescingConnCloseDoesNotWaitForAStuckPeer: Close returns, and closes the connection,
// even while a write to a peer that reads nothing is under way.
func TestCoalescingConnCloseDoesNotWaitForAStuckPeer(t *testing.T) {
	rc := newRecordingConn()
	rc.blockOn = make(chan struct{}) // never released
	c := newCoalescingConn(rc)
	_, _ = c.Write([]byte("stuck"))
	waitForToken(t, c)
	closed := make(chan struct{})
	go func() {
		_ = c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a stuck write")
	}
	select {
	case <-rc.closed:
	default:
		t.Fatal("Close did not close the connection")
	}
}

// waitForToken waits until the flushing goroutine holds the write token.
func waitForToken(t *testing.T, c *coalescingConn) {
	t.Helper()
	waitFor(t, "a write to start", func() bool { return len(c.writing) > 0 })
}

// TestCoalescingConnBoundsTheBuffer: past coalesceMaxPending a write goes to the connection
// itself, so a peer that reads slowly holds the writer back instead of growing the buffer.
func TestCoalescingConnBoundsTheBuffer(t *testing.T) {
	rc := newRecordingConn()
	c := newCoalescingConn(rc)
	c.writing <- struct{}{}
	chunk := bytes.Repeat([]byte("y"), coalesceDirectBytes-1)
	for len(c.pending)+len(chunk) <= coalesceMaxPending {
		_, _ = c.Write(chunk)
	}
	done := make(chan struct{})
	go func() {
		_, _ = c.Write(chunk)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("a write past the buffer's bound returned while the connection was busy")
	case <-time.After(20 * time.Millisecond):
	}
	<-c.writing
	<-done
	var total int
	for _, w := range rc.waitWrites(t, 2) {
		total += len(w)
	}
	if want := (coalesceMaxPending/len(chunk) + 1) * len(chunk); total != want {
		t.Fatalf("%d bytes written; want %d", total, want)
	}
}

// frames returns the bytes of the frames write makes with an HTTP/2 framer.
func frames(t *testing.T, write func(*http2.Framer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := write(http2.NewFramer(&buf, nil)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeAndLook writes p to c and returns whether c holds what it has and whether a flush
// is scheduled.
func writeAndLook(t *testing.T, c *coalescingConn, p []byte) (held, scheduled bool) {
	t.Helper()
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held, c.scheduled
}

// Connection window updates wait for the next write and leave with it; without one they
// leave within windowUpdateHold; a stream's window updates and other frames are not held.
func TestCoalescingConnHoldsConnectionWindowUpdates(t *testing.T) {
	connUpdate := frames(t, func(f *http2.Framer) error { return f.WriteWindowUpdate(0, 4096) })
	twoConnUpdates := append(append([]byte(nil), connUpdate...), connUpdate...)
	streamUpdate := frames(t, func(f *http2.Framer) error { return f.WriteWindowUpdate(1, 4096) })
	headers := frames(t, func(f *http2.Framer) error {
		return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0x82}, EndHeaders: true})
	})
	ping := frames(t, func(f *http2.Framer) error { return f.WritePing(false, [8]byte{}) })
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"connection update", connUpdate, true},
		{"two connection updates", twoConnUpdates, true},
		{"stream update", streamUpdate, false},
		{"connection and stream updates", append(append([]byte(nil), connUpdate...), streamUpdate...), false},
		{"headers", headers, false},
		{"ping", ping, false},
		{"part of a frame", connUpdate[:9], false},
	} {
		if got := onlyConnWindowUpdates(tc.p); got != tc.want {
			t.Errorf("%s: onlyConnWindowUpdates = %v, want %v", tc.name, got, tc.want)
		}
	}

	t.Run("taken along by the next write", func(t *testing.T) {
		rc := newRecordingConn()
		c := newCoalescingConn(rc)
		defer c.Close()
		if held, scheduled := writeAndLook(t, c, connUpdate); !held || scheduled {
			t.Fatalf("after a connection window update: held %v, flush scheduled %v; want it held", held, scheduled)
		}
		if _, err := c.Write(headers); err != nil {
			t.Fatal(err)
		}
		w := rc.waitWrites(t, 1)
		if want := string(connUpdate) + string(headers); len(w) != 1 || w[0] != want {
			t.Fatalf("writes %v, want the update and the headers in one", lens(w))
		}
	})
	t.Run("released without a next write", func(t *testing.T) {
		rc := newRecordingConn()
		c := newCoalescingConn(rc)
		defer c.Close()
		if _, err := c.Write(connUpdate); err != nil {
			t.Fatal(err)
		}
		if w := rc.waitWrites(t, 1); w[0] != string(connUpdate) {
			t.Fatalf("wrote %q, want the update", w[0])
		}
	})
	t.Run("a stream's update is not held", func(t *testing.T) {
		rc := newRecordingConn()
		c := newCoalescingConn(rc)
		defer c.Close()
		if held, scheduled := writeAndLook(t, c, streamUpdate); held || !scheduled {
			t.Fatalf("after a stream window update: held %v, flush scheduled %v; want it on its way", held, scheduled)
		}
		rc.waitWrites(t, 1)
	})
	t.Run("Close writes a held update", func(t *testing.T) {
		rc := newRecordingConn()
		c := newCoalescingConn(rc)
		if _, err := c.Write(connUpdate); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if w, _ := rc.written(); len(w) != 1 || w[0] != string(connUpdate) {
			t.Fatalf("writes %v after Close, want the held update", lens(w))
		}
	})
}
