package dataplane

import (
	"errors"
	"io"
	"sync"
)

// maxReplayBody is the most of a request body the proxy keeps to send again on a retry
// (Envoy's default retry buffer); a request with a larger body is not retried.
const maxReplayBody = 64 << 10

var errStaleAttempt = errors.New("the request body was handed to a newer attempt")

// replayBody is a request body that each attempt reads from the start: what the first
// attempt reads from the client is kept (up to maxReplayBody) while it is forwarded, so
// streaming bodies are not held back. Each attempt gets its own reader; an earlier
// attempt's reader (a transport may still be reading it) fails once a new one exists.
type replayBody struct {
	mu       sync.Mutex
	src      io.ReadCloser
	buf      []byte
	gen      int
	overflow bool
	err      error // the source's final error (io.EOF when it ended)
}

// attempt returns the body of a new attempt.
func (b *replayBody) attempt() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	return &replayReader{b: b, gen: b.gen}
}

// replayable reports whether another attempt can be sent the whole body.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow
}

type replayReader struct {
	b   *replayBody
	gen int
	pos int
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.gen != b.gen {
		return 0, errStaleAttempt
	}
	if r.pos < len(b.buf) {
		n := copy(p, b.buf[r.pos:])
		r.pos += n
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.src.Read(p)
	if n > 0 {
		if !b.overflow && len(b.buf)+n <= maxReplayBody {
			b.buf = append(b.buf, p[:n]...)
			r.pos += n
		} else {
			b.overflow, b.buf = true, nil
		}
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close does nothing: the server closes the client's body when the request ends.
func (r *replayReader) Close() error { return nil }
