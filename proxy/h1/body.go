package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"sync"
	"time"
)

// Errors a request body read fails with. The response may have started, so the server
// cannot answer 400 any more: it closes the connection after the handler returns, and
// reads no further request from it.
var (
	// ErrMalformedBody: the chunked framing or the trailer section broke the rules
	// (chunk size, chunk extension, line ends, trailer fields or their size).
	ErrMalformedBody = errors.New("h1: malformed request body")
	// ErrBodyReadTimeout: the client sent nothing for Options.BodyReadTimeout mid-body.
	ErrBodyReadTimeout = errors.New("h1: the client stopped sending the request body")
	// ErrBodyTruncated: the client closed the connection before the end of the body.
	ErrBodyTruncated = errors.New("h1: the client closed the connection before the end of the request body")
	// ErrBodyAfterHandler: a read of the body after the handler returned.
	ErrBodyAfterHandler = errors.New("h1: request body read after the handler returned")
)

// maxChunkLine bounds a chunk-size line, extensions included; maxChunkExcess bounds the
// framing bytes of a chunked body beyond what its data justifies.
const (
	maxChunkLine   = 4096
	maxChunkExcess = 16 << 10
)

// prohibitedTrailers are fields a trailer must not carry (RFC 9110 section 6.5.1: framing,
// routing, request modifiers, authentication, payload processing, connection options). A
// request declaring one in Trailer keeps the rest; the field itself is never exposed.
var prohibitedTrailers = map[string]bool{
	"Authorization": true, "Cache-Control": true, "Connection": true, "Content-Encoding": true,
	"Content-Length": true, "Content-Range": true, "Content-Type": true, "Cookie": true,
	"Expect": true, "Host": true, "If-Match": true, "If-Modified-Since": true,
	"If-None-Match": true, "If-Range": true, "If-Unmodified-Since": true, "Keep-Alive": true,
	"Max-Forwards": true, "Pragma": true, "Proxy-Authorization": true, "Proxy-Connection": true,
	"Range": true, "Set-Cookie": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true,
}

// serverBody is a request body as handlers see it. It frames the body itself (a
// Content-Length, or chunks validated strictly, trailers included), so that what it
// accepts is exactly what the head check promised. Close does nothing: the server reads
// what a handler leaves, to keep the connection.
type serverBody struct {
	mu      sync.Mutex
	br      *bufio.Reader
	cr      *connReader
	onEOF   context.CancelCauseFunc // at the end of the body: cr.startBackgroundRead(onEOF)
	timeout time.Duration

	chunked  bool
	n        int64 // Content-Length: bytes left; chunked: bytes left in this chunk
	needCRLF bool  // chunked: the CRLF after a chunk's data is still to come
	excess   int64 // chunked: framing bytes beyond what the data sizes justify
	eof      bool
	err      error
	closed   bool // the handler returned

	trailer   http.Header // declared trailer fields, filled at the end of a chunked body
	headBytes int         // what the head used of the limits trailers share
	headCount int
	maxBytes  int
	maxCount  int
}

// Read reads the body; an error other than io.EOF is sticky and ends the connection.
func (b *serverBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, ErrBodyAfterHandler
	}
	return b.read(p)
}

// Close lets the server finish the body.
func (b *serverBody) Close() error { return nil }

func (b *serverBody) read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.chunked && b.n == 0 {
		if err := b.nextChunk(); err != nil {
			return 0, b.fail(err)
		}
		if b.eof {
			return 0, io.EOF
		}
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err != nil {
		return n, b.fail(err)
	}
	if b.n == 0 && !b.chunked {
		b.setEOF()
	}
	return n, nil
}

func (b *serverBody) setEOF() {
	b.eof = true
	if b.onEOF != nil {
		b.cr.startBackgroundRead(b.onEOF)
	}
}

// fail records why the body cannot be read further, in the package's terms.
func (b *serverBody) fail(err error) error {
	switch {
	case errors.Is(err, ErrMalformedBody):
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w for %s", ErrBodyReadTimeout, b.timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = ErrBodyTruncated
	default:
		err = fmt.Errorf("h1: read the request body: %w", err)
	}
	b.err = err
	return err
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformedBody}, args...)...)
}

// readLine returns the next line, which must end in CRLF and hold no other CR or LF.
func (b *serverBody) readLine(limit int) ([]byte, error) {
	line, err := b.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > limit {
		return nil, malformed("line over %d bytes", limit)
	}
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, malformed("bare LF; end lines with CRLF")
	}
	return line[:len(line)-2], nil
}

// nextChunk reads the CRLF ending the previous chunk and the next chunk-size line; a last
// chunk is followed by the trailer section.
func (b *serverBody) nextChunk() error {
	if b.needCRLF {
		c1, err := b.br.ReadByte()
		if err != nil {
			return err
		}
		c2, err := b.br.ReadByte()
		if err != nil {
			return err
		}
		if c1 != '\r' || c2 != '\n' {
			return malformed("chunk data not followed by CRLF")
		}
		b.needCRLF = false
	}
	line, err := b.readLine(maxChunkLine)
	if err != nil {
		return err
	}
	size, err := parseChunkLine(line)
	if err != nil {
		return err
	}
	// Like net/http, refuse a body that is mostly framing (tiny chunks with long
	// extensions): each chunk may cost 16 bytes plus twice its size in framing.
	b.excess += int64(len(line)) + 4 - 16 - 2*min(size, 1<<20)
	b.excess = max(b.excess, 0)
	if b.excess > maxChunkExcess {
		return malformed("too much chunk framing for the data")
	}
	if size == 0 {
		if err := b.readTrailers(); err != nil {
			return err
		}
		b.setEOF()
		return nil
	}
	b.n, b.needCRLF = size, true
	return nil
}

// parseChunkLine parses chunk-size [ chunk-ext ] (RFC 9112 section 7.1).
func parseChunkLine(line []byte) (int64, error) {
	var size int64
	i := 0
	for ; i < len(line); i++ {
		d := unhex(line[i])
		if d < 0 {
			break
		}
		if size > (1<<63-1)>>4 {
			return 0, malformed("chunk size too large")
		}
		size = size<<4 | int64(d)
	}
	if i == 0 {
		return 0, malformed("chunk size %q is not hexadecimal", truncate(line))
	}
	if err := checkChunkExt(line[i:]); err != nil {
		return 0, err
	}
	return size, nil
}

// checkChunkExt checks *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
func checkChunkExt(ext []byte) error {
	bad := malformed("malformed chunk extension %q", truncate(ext))
	skipWS := func(i int) int {
		for i < len(ext) && (ext[i] == ' ' || ext[i] == '\t') {
			i++
		}
		return i
	}
	token := func(i int) int {
		for i < len(ext) && isTokenChar(ext[i]) {
			i++
		}
		return i
	}
	i := 0
	for i < len(ext) {
		// Whitespace is allowed before ";" and around "=" only.
		if i = skipWS(i); i == len(ext) || ext[i] != ';' {
			return bad
		}
		i = skipWS(i + 1)
		end := token(i)
		if end == i {
			return bad
		}
		i = end
		j := skipWS(i)
		if j == len(ext) || ext[j] != '=' {
			continue
		}
		i = skipWS(j + 1)
		if i < len(ext) && ext[i] == '"' {
			end, ok := quotedString(ext, i)
			if !ok {
				return bad
			}
			i = end
			continue
		}
		if end := token(i); end > i {
			i = end
			continue
		}
		return bad
	}
	return nil
}

// quotedString returns the index after the quoted-string starting at b[i].
func quotedString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			i++
			if i == len(b) || (b[i] < ' ' && b[i] != '\t') || b[i] == 0x7f {
				return 0, false
			}
		case c < ' ' && c != '\t', c == 0x7f:
			return 0, false
		}
	}
	return 0, false
}

// readTrailers reads the trailer section, within what the head left of the header limits,
// and keeps the declared fields.
func (b *serverBody) readTrailers() error {
	size, count := b.headBytes, b.headCount
	for {
		line, err := b.readLine(b.maxBytes)
		if err != nil {
			return err
		}
		size += len(line) + 2
		if size > b.maxBytes {
			return malformed("request head and trailers over %d bytes", b.maxBytes)
		}
		if len(line) == 0 {
			return nil
		}
		count++
		if count > b.maxCount {
			return malformed("more than %d header and trailer fields", b.maxCount)
		}
		name, value, reason := parseField(line)
		if reason != "" {
			return malformed("trailer: %s", reason)
		}
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		if vv, declared := b.trailer[key]; declared {
			b.trailer[key] = append(vv, string(value))
		}
	}
}

// finishHandler marks the end of the handler: later reads fail. It reports false when a
// read is in progress in another goroutine (a transport still sending the body): the
// connection must then be closed, and its buffers are not reused.
func (b *serverBody) finishHandler() bool {
	if !b.mu.TryLock() {
		return false
	}
	b.closed = true
	b.mu.Unlock()
	return true
}

// drain skips what the handler left of the body, up to limit bytes, and reports whether
// the connection can read the next request.
func (b *serverBody) drain(limit int64, buf []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onEOF = nil // the request is over: nothing to watch
	if b.err != nil {
		return false
	}
	if !b.chunked && b.n > limit {
		return false
	}
	for read := int64(0); !b.eof; {
		n, err := b.read(buf)
		read += int64(n)
		if err != nil || read > limit {
			return errors.Is(err, io.EOF)
		}
	}
	return true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
