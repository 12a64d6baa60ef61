package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// headError is a refused request head: the status to answer and why.
type headError struct {
	status int
	reason string
}

func (e *headError) Error() string { return e.reason }

func refuse(status int, format string, args ...any) *headError {
	return &headError{status: status, reason: fmt.Sprintf(format, args...)}
}

// head is what the checks of the raw head learnt.
type head struct {
	len    int // bytes, the final empty line included
	fields int
}

// readRequest checks the head in br's buffer, then parses it with net/http.
func (s *Server) readRequest(br *bufio.Reader) (*http.Request, head, *headError) {
	var h head
	n, herr := s.scanHead(br)
	if herr != nil {
		return nil, h, herr
	}
	raw, _ := br.Peek(n)
	fields, herr := s.checkHead(raw)
	if herr != nil {
		return nil, h, herr
	}
	h = head{len: n, fields: fields}
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, h, refuse(http.StatusBadRequest, "malformed request: %v", err)
	}
	if req.Method == http.MethodConnect {
		return nil, h, refuse(http.StatusMethodNotAllowed, "CONNECT is not proxied")
	}
	if req.URL.IsAbs() && req.URL.Host == "" {
		return nil, h, refuse(http.StatusBadRequest, "absolute-form request target without a host")
	}
	if !validHost(req.Host) {
		return nil, h, refuse(http.StatusBadRequest, "malformed Host %q", req.Host)
	}
	// Trailer declares fields of a chunked body's trailer section; net/http leaves it in the
	// header of other requests, where it means nothing.
	delete(req.Header, "Trailer")
	for name := range req.Trailer {
		if prohibitedTrailers[name] {
			delete(req.Trailer, name)
		}
	}
	return req, h, nil
}

// scanHead waits until the whole head (ending in an empty line) is buffered and returns its
// length, refusing bare LF line ends and heads over the limit.
func (s *Server) scanHead(br *bufio.Reader) (int, *headError) {
	checked := 0
	for {
		buf, err := br.Peek(br.Buffered())
		for i := checked; i < len(buf); i++ {
			if buf[i] != '\n' {
				continue
			}
			if i == 0 || buf[i-1] != '\r' {
				return 0, refuse(http.StatusBadRequest, "bare LF in the request head; end lines with CRLF")
			}
			if i >= 3 && buf[i-3] == '\r' && buf[i-2] == '\n' {
				if i+1 > s.opts.MaxHeaderBytes {
					return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "request head over %d bytes", s.opts.MaxHeaderBytes)
				}
				return i + 1, nil
			}
		}
		checked = len(buf)
		if len(buf) >= s.opts.MaxHeaderBytes {
			return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "request head over %d bytes", s.opts.MaxHeaderBytes)
		}
		if err != nil {
			return 0, refuse(http.StatusBadRequest, "read the request head: %v", err)
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) == 0 || errors.Is(err, io.EOF) {
				return 0, refuse(http.StatusBadRequest, "the request head ended early")
			}
			return 0, refuse(http.StatusRequestTimeout, "read the request head: %v", err)
		}
	}
}

// checkHead applies the framing rules to the raw head, lines ending in CRLF, and returns
// the number of header fields.
func (s *Server) checkHead(raw []byte) (int, *headError) {
	line, rest, _ := bytes.Cut(raw, []byte("\r\n"))
	http10, herr := checkRequestLine(line)
	if herr != nil {
		return 0, herr
	}
	fields, hosts, lengths, encodings := 0, 0, 0, 0
	var length []byte
	for len(rest) > 2 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if line[0] == ' ' || line[0] == '\t' {
			return 0, refuse(http.StatusBadRequest, "obsolete line folding in the request head")
		}
		fields++
		if fields > s.opts.MaxHeaderCount {
			return 0, refuse(http.StatusRequestHeaderFieldsTooLarge, "more than %d header fields", s.opts.MaxHeaderCount)
		}
		name, value, reason := parseField(line)
		if reason != "" {
			return 0, refuse(http.StatusBadRequest, "%s", reason)
		}
		switch {
		case asciiEqualFold(name, "host"):
			hosts++
		case asciiEqualFold(name, "content-length"):
			if lengths > 0 && !bytes.Equal(value, length) {
				return 0, refuse(http.StatusBadRequest, "conflicting Content-Length values")
			}
			lengths++
			length = value
		case asciiEqualFold(name, "transfer-encoding"):
			encodings++
			if encodings > 1 || !asciiEqualFold(value, "chunked") {
				return 0, refuse(http.StatusBadRequest, "unsupported Transfer-Encoding %q; only a single chunked is accepted", value)
			}
		}
	}
	switch {
	case encodings > 0 && lengths > 0:
		return 0, refuse(http.StatusBadRequest, "both Transfer-Encoding and Content-Length")
	case encodings > 0 && http10:
		return 0, refuse(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
	case hosts > 1:
		return 0, refuse(http.StatusBadRequest, "more than one Host")
	case hosts == 0 && !http10:
		return 0, refuse(http.StatusBadRequest, "missing Host")
	}
	if lengths > 0 {
		if _, err := strconv.ParseUint(string(length), 10, 63); err != nil || len(length) == 0 || length[0] == '+' {
			return 0, refuse(http.StatusBadRequest, "malformed Content-Length %q", length)
		}
	}
	return fields, nil
}

// checkRequestLine checks method SP request-target SP HTTP-version (RFC 9112 section 3):
// a token method, a target of visible characters in origin-form (or absolute-form, or
// "*" for OPTIONS, or authority-form for CONNECT), and HTTP/1.1 or HTTP/1.0.
func checkRequestLine(line []byte) (http10 bool, herr *headError) {
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(method) == 0 {
		return false, refuse(http.StatusBadRequest, "malformed request line")
	}
	for _, c := range method {
		if !isTokenChar(c) {
			return false, refuse(http.StatusBadRequest, "malformed request method %q", truncate(method))
		}
	}
	target, version, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(target) == 0 {
		return false, refuse(http.StatusBadRequest, "malformed request line")
	}
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10 = true
	default:
		return false, refuse(http.StatusBadRequest, "unsupported protocol %q", truncate(version))
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f || c == '#' {
			return false, refuse(http.StatusBadRequest, "malformed request target; encode spaces, controls and # with %%XX")
		}
	}
	switch {
	case target[0] == '/':
	case string(method) == http.MethodConnect:
	case len(target) == 1 && target[0] == '*':
		if string(method) != http.MethodOptions {
			return false, refuse(http.StatusBadRequest, "request target * is for OPTIONS only")
		}
	case hasPrefixFold(target, "http://"), hasPrefixFold(target, "https://"):
	default:
		return false, refuse(http.StatusBadRequest, "malformed request target %q", truncate(target))
	}
	return http10, nil
}

// parseField splits a header or trailer field line and checks its name (a token) and value
// (no controls but HTAB), returning why it is malformed, or "".
func parseField(line []byte) (name, value []byte, reason string) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, "malformed header field"
	}
	name, value = line[:colon], bytes.Trim(line[colon+1:], " \t")
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, fmt.Sprintf("malformed header field name %q", truncate(name))
		}
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, fmt.Sprintf("control character in header field %s", name)
		}
	}
	return name, value, ""
}

// validHost reports whether h is a host and optional port made of the characters RFC 3986
// allows there (reg-name, IP literal, percent-encoding); empty is allowed.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && asciiEqualFold(b[:len(prefix)], prefix)
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
