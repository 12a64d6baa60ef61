package detect

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pieceConn is a connection whose reads return its input in pieces of at most step bytes,
// then EOF (or a timeout, when timeout is set); nothing blocks.
type pieceConn struct {
	net.Conn // nil: only the methods below are used
	in       []byte
	step     int
	timeout  bool
	deadline time.Time
	cleared  bool
}

func (c *pieceConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		if c.timeout {
			return 0, os.ErrDeadlineExceeded
		}
		return 0, io.EOF
	}
	n := min(len(p), c.step, len(c.in))
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

func (c *pieceConn) SetReadDeadline(t time.Time) error {
	c.deadline, c.cleared = t, t.IsZero()
	return nil
}

// FuzzDetect checks Classify and Detect on arbitrary bytes: no panic; a decision, once
// made, never changes as more bytes come; Detect, however the bytes are split and whatever
// the buffer size, decides what Classify decides on the bytes it read, returns exactly the
// bytes it read, leaves no deadline behind, and the prefix replays the stream unchanged.
func FuzzDetect(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "POST /x?y=1 HTTP/1.0\r\n", "GET / HTTP/1.1\n",
		H2Preface + "\x00\x00\x00\x04", "PRI * HTTP/1.1\r\n", "\x16\x03\x01\x02\x00\x01",
		"SSH-2.0-OpenSSH_9.2\r\n", "\x00\x00\x00\x08\x04\xd2\x16\x2f", "GET /" + string(make([]byte, 100)),
		"", "G", "GET  / HTTP/1.1\r\n", "GET / HTTP/1.1\r\r",
	} {
		f.Add([]byte(s), uint8(3), uint8(64), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, step, size uint8, timeout bool) {
		p, done := Classify(in)
		decided := -1
		for k := 0; k <= len(in); k++ {
			pk, dk := Classify(in[:k])
			switch {
			case decided >= 0 && (!dk || pk != p):
				t.Fatalf("Classify(%q) = %s, %v after Classify(%q) decided %s", in[:k], pk, dk, in[:decided], p)
			case decided < 0 && dk:
				if !done || pk != p {
					t.Fatalf("Classify(%q) decided %s but Classify(%q) = %s, %v", in[:k], pk, in, p, done)
				}
				decided = k
			}
		}
		if !done && p != Opaque {
			t.Fatalf("undecided %q is %s", in, p)
		}

		buf := make([]byte, int(size)+1)
		conn := &pieceConn{in: in, step: int(step) + 1, timeout: timeout}
		got, prefix, err := Detect(conn, buf, time.Second)
		if err != nil {
			t.Fatalf("Detect: %v", err)
		}
		if !conn.cleared {
			t.Fatal("Detect left a read deadline")
		}
		if !bytes.HasPrefix(in, prefix) || len(prefix) > len(buf) {
			t.Fatalf("prefix %q is not the start of %q", prefix, in)
		}
		switch want, decidedHere := Classify(prefix); {
		case decidedHere && got != want:
			t.Fatalf("Detect = %s on %q, Classify = %s", got, prefix, want)
		case !decidedHere && len(prefix) < len(buf) && got != Opaque:
			t.Fatalf("Detect = %s on %q (stream ended undecided)", got, prefix)
		case !decidedHere && len(prefix) == len(buf) && got != Opaque && got != HTTP1:
			t.Fatalf("Detect = %s on a full buffer %q", got, prefix)
		}
		all, err := io.ReadAll(&PrefixConn{Conn: conn, Prefix: prefix})
		if err != nil && (!timeout || !errors.Is(err, os.ErrDeadlineExceeded)) {
			t.Fatalf("replay: %v", err)
		}
		if !bytes.Equal(all, in) {
			t.Fatalf("replayed %q, want %q", all, in)
		}
	})
}
