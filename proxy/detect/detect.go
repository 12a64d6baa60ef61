// Package detect tells the protocol a client speaks from its first bytes: HTTP/1, HTTP/2
// with prior knowledge, TLS, or anything else (opaque). The peek is bounded in size and in
// time: a client that says nothing within the timeout (a server-speaks-first protocol) or
// whose bytes fit no known protocol is opaque, and its bytes are replayed unchanged.
package detect

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Protocol is what a connection speaks.
type Protocol uint8

// The protocols Detect tells apart.
const (
	Opaque Protocol = iota
	HTTP1
	HTTP2
	TLS
)

// String names p for logs and metrics.
func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "h2"
	case TLS:
		return "tls"
	}
	return "opaque"
}

// H2Preface is the client connection preface of HTTP/2.
const H2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethod is the longest request method HTTP/1 detection accepts.
const maxMethod = 24

// Classify looks at the first bytes of a connection. It returns done=false while b is too
// short to decide.
func Classify(b []byte) (p Protocol, done bool) {
	if len(b) == 0 {
		return Opaque, false
	}
	if b[0] == 0x16 { // TLS handshake record: 0x16, 0x03, 0x00-0x04
		if len(b) < 3 {
			return Opaque, false
		}
		if b[1] == 3 && b[2] <= 4 {
			return TLS, true
		}
		return Opaque, true
	}
	if n := min(len(b), len(H2Preface)); string(b[:n]) == H2Preface[:n] {
		if n == len(H2Preface) {
			return HTTP2, true
		}
		return Opaque, false
	}
	return classifyHTTP1(b)
}

// classifyHTTP1 checks for a request line: method SP target SP HTTP/1.x CRLF.
func classifyHTTP1(b []byte) (Protocol, bool) {
	i := 0
	for ; i < len(b) && b[i] != ' '; i++ {
		if !isTokenChar(b[i]) || i >= maxMethod {
			return Opaque, true
		}
	}
	if i == len(b) {
		return Opaque, false
	}
	if i == 0 {
		return Opaque, true
	}
	i++
	start := i
	for ; i < len(b) && b[i] != ' '; i++ {
		if b[i] <= ' ' || b[i] == 0x7f {
			return Opaque, true
		}
	}
	if i == len(b) {
		return Opaque, false
	}
	if i == start {
		return Opaque, true
	}
	rest := b[i+1:]
	// HTTP/1.x then CRLF; a bare LF is HTTP/1 too, so that the HTTP server refuses it
	// rather than letting it through as opaque bytes.
	const version = "HTTP/1.x\r\n"
	for j := 0; j < len(rest) && j < len(version); j++ {
		switch {
		case j == 7:
			if rest[j] != '0' && rest[j] != '1' {
				return Opaque, true
			}
		case j == 8 && rest[j] == '\n':
			return HTTP1, true
		case rest[j] != version[j]:
			return Opaque, true
		}
	}
	if len(rest) < len(version) {
		return Opaque, false
	}
	return HTTP1, true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// Detect reads the first bytes of conn into buf until Classify decides, buf is full, the
// client stops sending (EOF) or timeout passes, and returns the protocol and the bytes read,
// which the caller must replay. A full buffer whose start looks like a request line is
// HTTP/1 (the HTTP server answers a line that long); timeouts and EOF mean Opaque. Only
// other read errors are returned. The read deadline is cleared before returning; if that
// fails, its error is returned, as the connection would otherwise time out later.
func Detect(conn net.Conn, buf []byte, timeout time.Duration) (Protocol, []byte, error) {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Opaque, nil, err
	}
	p, prefix, err := peek(conn, buf)
	// A deadline left in place would cut off whoever serves the connection next.
	if cerr := conn.SetReadDeadline(time.Time{}); cerr != nil && err == nil {
		return p, prefix, cerr
	}
	return p, prefix, err
}

// peek is Detect's read loop, run under the read deadline Detect set.
func peek(conn net.Conn, buf []byte) (Protocol, []byte, error) {
	n := 0
	for n < len(buf) {
		m, err := conn.Read(buf[n:])
		n += m
		if p, done := Classify(buf[:n]); done {
			return p, buf[:n], nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) || isEOF(err) {
				return Opaque, buf[:n], nil
			}
			return Opaque, buf[:n], err
		}
	}
	if looksLikeRequestLine(buf[:n]) {
		return HTTP1, buf[:n], nil
	}
	return Opaque, buf[:n], nil
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed)
}

// looksLikeRequestLine reports whether b starts with a method and a space and has no line
// end: a request line longer than the peek.
func looksLikeRequestLine(b []byte) bool {
	sp := bytes.IndexByte(b, ' ')
	return sp > 0 && sp <= maxMethod && bytes.IndexByte(b, '\n') < 0
}

// PrefixConn is a connection whose first reads return Prefix, the bytes detection read.
type PrefixConn struct {
	net.Conn
	Prefix []byte
}

// Read returns the prefix first, then reads the connection.
func (c *PrefixConn) Read(p []byte) (int, error) {
	if len(c.Prefix) > 0 {
		n := copy(p, c.Prefix)
		c.Prefix = c.Prefix[n:]
		if len(c.Prefix) == 0 {
			c.Prefix = nil // the connection no longer holds the bytes
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection when it can.
func (c *PrefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
