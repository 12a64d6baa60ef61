package dataplane

import (
	"strings"
	"testing"
)

// A request body that turns out malformed after its head was accepted and forwarded is the
// client's fault: the proxy answers 400 bad-request (not a 502 upstream error) and closes the
// connection, and a request pipelined behind it is never read.
func TestMalformedBodyMidStreamIsTheClientsFault(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	raw := "POST /upload HTTP/1.1\r\nHost: " + app.addr + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n" +
		"GET /smuggled HTTP/1.1\r\nHost: " + app.addr + "\r\n\r\n"
	out := m.rawRequest(t, app.addr, raw)
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(strings.ToLower(out), "lightmesh-proxy-error: bad-request") {
		t.Fatalf("answered %q, want 400 bad-request", out)
	}
	if strings.Count(out, "HTTP/1.1 ") != 1 {
		t.Errorf("the pipelined request was answered too: %q", out)
	}
}
