package dataplane

// Hostile input against the proxy's HTTP servers (issue 13): HTTP/2 floods written frame by
// frame (rapid reset, CONTINUATION, PING and SETTINGS floods), oversized headers over HTTP/2,
// HTTP/1 smuggling variants on kept-alive connections, and forged mesh headers. Each test
// fails if the proxy regresses: the upstream sees a request it must not, the connection is
// not closed, or goroutines and memory grow without bound.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// h2Attacker is a raw HTTP/2 client connection through proxy A's outbound listener.
type h2Attacker struct {
	c  net.Conn
	bw *bufio.Writer
	fr *http2.Framer
}

// h2Dial opens a prior-knowledge HTTP/2 connection to target through dial and sends the
// preface and an empty SETTINGS frame.
func h2Dial(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), target string) *h2Attacker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := &h2Attacker{c: c, bw: bufio.NewWriterSize(c, 64<<10)}
	a.fr = http2.NewFramer(a.bw, c)
	a.fr.SetMaxReadFrameSize(1 << 20)
	if _, err := io.WriteString(a.bw, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := a.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := a.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

// headerBlock encodes a GET of path on authority plus extra fields.
func headerBlock(authority, path string, extra ...hpack.HeaderField) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: authority}, {Name: ":path", Value: path},
	}, extra...) {
		_ = enc.WriteField(f)
	}
	return buf.Bytes()
}

// drain reads frames until the connection fails and reports what it saw: GOAWAY frames,
// RST_STREAM frames and the response HEADERS (status values) per stream.
type h2Result struct {
	mu      sync.Mutex
	goAway  []http2.ErrCode
	resets  int
	status  map[uint32]string
	closed  chan struct{}
	readErr error
}

func (a *h2Attacker) drain() *h2Result {
	res := &h2Result{status: map[uint32]string{}, closed: make(chan struct{})}
	dec := hpack.NewDecoder(64<<10, nil)
	go func() {
		defer close(res.closed)
		for {
			f, err := a.fr.ReadFrame()
			if err != nil {
				res.mu.Lock()
				res.readErr = err
				res.mu.Unlock()
				return
			}
			res.mu.Lock()
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				res.goAway = append(res.goAway, f.ErrCode)
			case *http2.RSTStreamFrame:
				res.resets++
			case *http2.HeadersFrame:
				fields, _ := dec.DecodeFull(f.HeaderBlockFragment())
				for _, hf := range fields {
					if hf.Name == ":status" {
						res.status[f.StreamID] = hf.Value
					}
				}
			}
			res.mu.Unlock()
		}
	}()
	return res
}

// sampler records the peak goroutine count and heap while an attack runs.
type sampler struct {
	stop          chan struct{}
	done          chan struct{}
	peakG         atomic.Int64
	peakHeap      atomic.Uint64
	baseG         int
	baseHeap      uint64
	sampledOnce   atomic.Bool
	sampleEvery   time.Duration
	readMemEveryN int
}

func startSampler() *sampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{}), baseG: runtime.NumGoroutine(), baseHeap: ms.HeapInuse,
		sampleEvery: 5 * time.Millisecond, readMemEveryN: 10}
	go func() {
		defer close(s.done)
		for i := 0; ; i++ {
			if g := int64(runtime.NumGoroutine()); g > s.peakG.Load() {
				s.peakG.Store(g)
			}
			if i%s.readMemEveryN == 0 {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > s.peakHeap.Load() {
					s.peakHeap.Store(ms.HeapInuse)
				}
			}
			s.sampledOnce.Store(true)
			select {
			case <-s.stop:
				return
			case <-time.After(s.sampleEvery):
			}
		}
	}()
	return s
}

// finish stops sampling and checks the peaks against the bounds, then waits for the
// goroutines to come back to the baseline.
func (s *sampler) finish(t *testing.T, maxExtraG int, maxExtraHeap uint64) {
	t.Helper()
	close(s.stop)
	<-s.done
	extraG := int(s.peakG.Load()) - s.baseG
	extraHeap := int64(s.peakHeap.Load()) - int64(s.baseHeap)
	t.Logf("peak: %d goroutines over %d, heap in use %d KiB over %d KiB", extraG, s.baseG, extraHeap>>10, s.baseHeap>>10)
	if extraG > maxExtraG {
		t.Errorf("the attack raised goroutines by %d, bound %d", extraG, maxExtraG)
	}
	if extraHeap > int64(maxExtraHeap) {
		t.Errorf("the attack raised the heap in use by %d MiB, bound %d MiB", extraHeap>>20, maxExtraHeap>>20)
	}
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > s.baseG+10 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines did not come back: %d, baseline %d\n%s", runtime.NumGoroutine(), s.baseG, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkStillServes sends a normal request through A and expects the app's answer.
func checkStillServes(t *testing.T, m *mesh, app *appServer, h2 bool) {
	t.Helper()
	resp, body := get(t, m.httpClient(h2), "http://"+app.addr+"/after")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "GET /after") {
		t.Fatalf("after the attack the proxy answered %d %q", resp.StatusCode, body)
	}
}

// waitClosed waits for the server to end the connection (a read error) within d.
func waitClosed(t *testing.T, res *h2Result, d time.Duration, what string) {
	t.Helper()
	select {
	case <-res.closed:
	case <-time.After(d):
		t.Fatalf("%s: the proxy did not close the connection within %v", what, d)
	}
}

// Rapid reset (CVE-2023-44487): a client opens streams and cancels each at once. The
// proxy must not run unbounded concurrent work for them: goroutines stay bounded, the
// connection is closed or the flood is absorbed, and the proxy keeps serving others.
func TestHTTP2RapidResetIsBounded(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	checkStillServes(t, m, app, true) // warm: the mesh connection A→B exists
	s := startSampler()
	a := h2Dial(t, m.dial, app.addr)
	res := a.drain()
	const streams = 20000
	block := headerBlock(app.addr, "/reset")
	_ = a.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	sent := 0
	for i := range streams {
		id := uint32(2*i + 1)
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			break
		}
		if err := a.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
		if i%100 == 99 {
			if err := a.bw.Flush(); err != nil {
				break
			}
		}
		sent++
	}
	_ = a.bw.Flush()
	// Give the server time to act on what it read, then hang up.
	select {
	case <-res.closed:
	case <-time.After(3 * time.Second):
	}
	a.c.Close()
	<-res.closed
	reached := app.requests.Load()
	t.Logf("sent %d HEADERS+RST_STREAM pairs; %d requests reached the app; GOAWAY %v", sent, reached, res.goAway)
	// 250 streams may run at once (MaxConcurrentStreams); each reset stream may still be
	// forwarded, but the proxy must not have run them all concurrently.
	s.finish(t, 3000, 256<<20)
	checkStillServes(t, m, app, true)
}

// CONTINUATION flood (CVE-2024-27316): HEADERS without END_HEADERS followed by endless
// CONTINUATION frames. The proxy must stop reading them once the header block passes its
// limit and close the connection, without buffering what the client sends.
func TestHTTP2ContinuationFloodIsClosed(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	s := startSampler()
	a := h2Dial(t, m.dial, app.addr)
	res := a.drain()
	block := headerBlock(app.addr, "/cont")
	if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: false}); err != nil {
		t.Fatal(err)
	}
	// Each CONTINUATION carries a literal field of 16 KiB: new name, new value, never indexed.
	var one bytes.Buffer
	enc := hpack.NewEncoder(&one)
	_ = enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 16<<10), Sensitive: true})
	frag := one.Bytes()
	_ = a.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	written := 0
	for written < 256<<20 {
		if err := a.fr.WriteContinuation(1, false, frag); err != nil {
			break
		}
		if err := a.bw.Flush(); err != nil {
			break
		}
		written += len(frag)
		select {
		case <-res.closed:
			written = 1 << 30
		default:
		}
	}
	waitClosed(t, res, 10*time.Second, "CONTINUATION flood")
	if app.requests.Load() != 0 {
		t.Errorf("%d requests reached the app", app.requests.Load())
	}
	s.finish(t, 100, 64<<20)
	checkStillServes(t, m, app, true)
}

// PING and SETTINGS floods (CVE-2019-9512, CVE-2019-9515): a client that sends control
// frames and never reads the acknowledgements. The proxy must close the connection once
// its queue of control frames is full, not buffer acknowledgements without bound.
func TestHTTP2ControlFrameFloodsAreClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(fr *http2.Framer, i int) error
	}{
		{"PING", func(fr *http2.Framer, i int) error {
			var data [8]byte
			data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
			return fr.WritePing(false, data)
		}},
		{"SETTINGS", func(fr *http2.Framer, i int) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i%2)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(t, meshConfig{})
			app := startApp(t)
			m.serve(t, app.addr, serverSA)
			s := startSampler()
			a := h2Dial(t, m.dial, app.addr)
			// Never read: the proxy's acknowledgements pile up. Each flush must make progress
			// within 3 s; when it does not, the proxy has stopped reading (back-pressure).
			_ = a.c.(interface{ SetReadBuffer(int) error }).SetReadBuffer(4 << 10)
			const limit = 2_000_000
			var werr error
			sent := 0
			for ; sent < limit; sent++ {
				if werr = tc.write(a.fr, sent); werr != nil {
					break
				}
				if sent%256 == 255 {
					_ = a.c.SetWriteDeadline(time.Now().Add(3 * time.Second))
					if werr = a.bw.Flush(); werr != nil {
						break
					}
				}
			}
			if werr == nil {
				// Absorbed: acceptable only if nothing piled up (the acknowledgements of 2M
				// frames are 18 MB; the heap must not hold them).
				t.Logf("the proxy read all %d %s frames without closing the connection or pushing back", sent, tc.name)
				a.c.Close()
				s.finish(t, 100, 16<<20)
				checkStillServes(t, m, app, true)
				return
			}
			var ne net.Error
			if errors.As(werr, &ne) && ne.Timeout() {
				t.Logf("the proxy stopped reading after %d %s frames (back-pressure; its WriteByteTimeout closes the connection later)", sent, tc.name)
			} else {
				t.Logf("the proxy closed the connection after %d %s frames: %v", sent, tc.name, werr)
			}
			a.c.Close()
			s.finish(t, 100, 16<<20)
			checkStillServes(t, m, app, true)
		})
	}
}

// A header far over the limit on HTTP/2 is refused (431 or a stream/connection error),
// never forwarded, and the proxy keeps serving.
func TestHTTP2OversizedHeaderIsRefused(t *testing.T) {
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.HTTP.MaxHeaderBytes = 8 << 10 }})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	a := h2Dial(t, m.dial, app.addr)
	res := a.drain()
	block := headerBlock(app.addr, "/big", hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", 64<<10), Sensitive: true})
	// Split over a HEADERS and CONTINUATION frames of 16 KiB (the default max frame size).
	first, rest := block[:16<<10], block[16<<10:]
	if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true, EndHeaders: false}); err != nil {
		t.Fatal(err)
	}
	for len(rest) > 0 {
		n := min(len(rest), 16<<10)
		if err := a.fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
			break
		}
		rest = rest[n:]
	}
	_ = a.bw.Flush()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res.mu.Lock()
		status, gotStatus := res.status[1]
		done := gotStatus || res.resets > 0 || len(res.goAway) > 0
		res.mu.Unlock()
		if done {
			if gotStatus && status != "431" {
				t.Fatalf("answered %s to a 64 KiB header, want 431", status)
			}
			break
		}
		select {
		case <-res.closed:
			done = true
		case <-time.After(10 * time.Millisecond):
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no answer, reset or GOAWAY to a 64 KiB header")
		}
	}
	if app.requests.Load() != 0 {
		t.Errorf("the oversized request reached the app")
	}
	checkStillServes(t, m, app, true)
	// The same through the Go client: an error or 431, never the app.
	req, _ := http.NewRequest(http.MethodGet, "http://"+app.addr+"/big", nil)
	req.Header.Set("X-Big", strings.Repeat("c", 64<<10))
	if resp, err := m.httpClient(true).Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("answered %d, want 431", resp.StatusCode)
		}
	}
	if app.requests.Load() != 1 {
		t.Errorf("the app saw %d requests, want only the check's 1", app.requests.Load())
	}
}

// HTTP/1 smuggling on a kept-alive connection: after a valid request, a request whose
// framing is ambiguous must be refused and the connection closed, so the bytes hidden in
// its body never reach the upstream as a second request.
func TestHTTP1SmugglingNeverReachesUpstream(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	host := "Host: " + app.addr + "\r\n"
	smuggled := "GET /smuggled HTTP/1.1\r\n" + host + "\r\n"
	for _, tc := range []struct{ name, second string }{
		{"CL.TE", "POST /second HTTP/1.1\r\n" + host + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE.CL", "POST /second HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" + "2c\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{"double CL", "POST /second HTTP/1.1\r\n" + host + "Content-Length: 0\r\nContent-Length: " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"CL list", "POST /second HTTP/1.1\r\n" + host + "Content-Length: 0, " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"TE obfuscated", "POST /second HTTP/1.1\r\n" + host + "Transfer-Encoding: xchunked\r\nContent-Length: " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"TE with tab", "POST /second HTTP/1.1\r\n" + host + "Transfer-Encoding:\tchunked\x0b\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE obs-fold", "POST /second HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n chunked\r\nContent-Length: " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"bare LF chunk", "POST /second HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\n\n" + smuggled},
		{"chunk extension LF", "POST /second HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n2;\n" + "xx\r\n0\r\n\r\n" + smuggled},
		{"chunk size overflow", "POST /second HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{"bare CR", "POST /second HTTP/1.1\r\n" + host + "X-A: b\rContent-Length: " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"space in name", "POST /second HTTP/1.1\r\n" + host + "Content Length: " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"HTTP/0.9 request line", "GET /second\r\n" + smuggled},
		{"absolute URI other host", "GET http://evil.example/second HTTP/1.1\r\nHost: evil.example\r\nHost: " + app.addr + "\r\n\r\n" + smuggled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := app.requests.Load()
			out := m.rawRequest(t, app.addr, "GET /first HTTP/1.1\r\n"+host+"\r\n"+tc.second)
			if strings.Contains(out, "smuggled") {
				t.Fatalf("the smuggled request was answered: %q", out)
			}
			if !strings.HasPrefix(out, "HTTP/1.1 200 OK") {
				t.Fatalf("the first request was not answered: %q", out)
			}
			// The second request is refused (or, for framings the proxy accepts as one request,
			// forwarded whole): never two upstream requests out of it.
			if n := app.requests.Load() - before; n > 2 {
				t.Errorf("the app saw %d requests; answer %q", n, out)
			}
		})
	}
}

// Forged mesh headers from outside the mesh never reach the application as they were
// sent: any case, any direction, HTTP/1 or HTTP/2, as trailers or named in Connection.
func TestForgedMeshHeadersAreNeverTrusted(t *testing.T) {
	const forged = "spiffe://cluster.local/ns/kube-system/sa/admin"
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	seenBy := func(t *testing.T, c *http.Client, header http.Header) http.Header {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+app.addr+"/forged", nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("answered %d", resp.StatusCode)
		}
		return resp.Header
	}
	variants := map[string]http.Header{
		"canonical":           {"Lightmesh-Client-Id": {forged}},
		"lower case":          {"lightmesh-client-id": {forged}},
		"upper case":          {"LIGHTMESH-CLIENT-ID": {forged}},
		"two values":          {"Lightmesh-Client-Id": {forged, forged}},
		"orig proto":          {"Lightmesh-Orig-Proto": {"HTTP/1.1"}, "Lightmesh-Client-Id": {forged}},
		"any mesh header":     {"Lightmesh-Anything": {"x"}, "Lightmesh-Client-Id": {forged}},
		"named in Connection": {"Connection": {"Lightmesh-Client-Id"}, "Lightmesh-Client-Id": {forged}},
	}
	for _, h2 := range []bool{false, true} {
		for name, header := range variants {
			if h2 && header.Get("Connection") != "" {
				continue // HTTP/2 has no Connection field: clients refuse to send it
			}
			t.Run(name+map[bool]string{false: " HTTP/1", true: " HTTP/2"}[h2], func(t *testing.T) {
				// Through the mesh: the app sees A's verified identity, nothing else of the mesh's.
				got := seenBy(t, m.httpClient(h2), header)
				if id := got.Get("X-Seen-Client-Id"); id != clientSA {
					t.Errorf("through the mesh the app saw client id %q, want the verified %q", id, clientSA)
				}
				if names := got.Get("X-Seen-Mesh-Headers"); names != ClientIDHeader {
					t.Errorf("through the mesh the app saw mesh headers %q, want only %s", names, ClientIDHeader)
				}
				// Straight to B's inbound without mTLS: no identity at all.
				var protocols http.Protocols
				if h2 {
					protocols.SetUnencryptedHTTP2(true)
				} else {
					protocols.SetHTTP1(true)
				}
				direct := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &protocols,
					DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
						return m.natB.dialVia(m.b.InboundAddr().String())(ctx, "tcp", addr)
					}}}
				got = seenBy(t, direct, header)
				if id := got.Get("X-Seen-Client-Id"); id != "" {
					t.Errorf("a plaintext client's forged id reached the app: %q", id)
				}
				if names := got.Get("X-Seen-Mesh-Headers"); names != "" {
					t.Errorf("a plaintext client's mesh headers reached the app: %q", names)
				}
			})
		}
	}
	// As HTTP/1 trailers: declared and sent after a chunked body, to an app that echoes
	// every trailer it receives.
	t.Run("trailers", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		echo := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			for k, v := range r.Trailer {
				w.Header().Add("X-Seen-Trailer", k+"="+strings.Join(v, ","))
			}
			w.Header().Set("X-Seen-Client-Id", r.Header.Get(ClientIDHeader))
		})}
		go func() { _ = echo.Serve(ln) }()
		t.Cleanup(func() { echo.Close() })
		addr := ln.Addr().String()
		m.serve(t, addr, serverSA)
		raw := "POST /forged HTTP/1.1\r\nHost: " + addr + "\r\nTransfer-Encoding: chunked\r\nTrailer: Lightmesh-Client-Id, X-Ok\r\nConnection: close\r\n\r\n" +
			"3\r\nabc\r\n0\r\nLightmesh-Client-Id: " + forged + "\r\nX-Ok: fine\r\n\r\n"
		out := m.rawRequest(t, addr, raw)
		if !strings.HasPrefix(out, "HTTP/1.1 200 OK") {
			t.Fatalf("answered %q", out)
		}
		if strings.Contains(out, forged) {
			t.Errorf("the forged trailer reached the app: %q", out)
		}
		if !strings.Contains(out, "X-Seen-Client-Id: "+clientSA) {
			t.Errorf("the app did not see the verified client id: %q", out)
		}
	})
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// retryOn "reset" applies when the application behind the peer proxy resets the connection:
// the client proxy never sees that reset itself, only the peer's 502 saying so (found by
// reading the retry conditions for TestFaults' resetting backend).
func TestRetryOnResetCoversThePeersApplication(t *testing.T) {
	rp := &policy.RetryPolicy{Attempts: 1, RetryOn: []string{"reset"}}
	peer := &http.Response{StatusCode: http.StatusBadGateway, Header: http.Header{ProxyErrorHeader: {reasonReset}}, Body: http.NoBody}
	if !retriable(rp, peer, nil, false) {
		t.Error("a 502 from the peer proxy for its application's reset is not retried under retryOn reset")
	}
	other := &http.Response{StatusCode: http.StatusBadGateway, Header: http.Header{}, Body: http.NoBody}
	if retriable(rp, other, nil, false) {
		t.Error("a plain 502 is retried under retryOn reset")
	}
}
