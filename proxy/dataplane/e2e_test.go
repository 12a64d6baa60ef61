package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// response is what get reports of a response whose body it has read and closed.
type response struct {
	StatusCode       int
	Proto            string
	ProtoMajor       int
	Header           http.Header
	TransferEncoding []string
}

// get fetches url and returns the response and its body, which it reads and closes.
func get(t *testing.T, c *http.Client, url string) (response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{
		StatusCode:       resp.StatusCode,
		Proto:            resp.Proto,
		ProtoMajor:       resp.ProtoMajor,
		Header:           resp.Header,
		TransferEncoding: resp.TransferEncoding,
	}, string(body)
}

func TestHTTP1KeepAliveOverMTLS(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	client := m.httpClient(false)
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodPost, "http://"+app.addr+"/hello", strings.NewReader("abc"))
		req.Header.Set(ClientIDHeader, "spiffe://cluster.local/ns/evil/sa/spoofed")
		req.Header.Set("Lightmesh-Orig-Proto", "spoofed")
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "must not pass")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "POST /hello 3" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Seen-Client-Id"); got != clientSA {
			t.Errorf("the app saw client id %q, want %q", got, clientSA)
		}
		if got := resp.Header.Get("X-Seen-Proto"); got != "HTTP/1.1" {
			t.Errorf("the app saw %s, want HTTP/1.1 restored", got)
		}
		if got := resp.Header.Get("X-Seen-Mesh-Headers"); got != ClientIDHeader {
			t.Errorf("the app saw mesh headers %q, want only %s", got, ClientIDHeader)
		}
		if resp.Header.Get("X-Seen-Hop") != "" {
			t.Error("a header named in Connection reached the app")
		}
		if got := resp.Header.Get("X-Seen-Host"); got != app.addr {
			t.Errorf("the app saw Host %q, want %q", got, app.addr)
		}
		if got := resp.Header.Get(ProxyErrorHeader); got != "" {
			t.Errorf("the app's spoofed %s reached the client: %q", ProxyErrorHeader, got)
		}
	}
	// One mTLS connection between the proxies carried every request, and is counted in the
	// TCP metrics with the client's identity, as opaque connections are.
	if n := m.b.metrics.Sample("tcp_open_total", map[string]string{"direction": "inbound", "peer": "src", "tls": "true", "client_id": clientSA}); n != 1 {
		t.Errorf("inbound tcp_open_total{peer=src} = %v, want the one mTLS connection", n)
	}
	if n := m.b.metrics.Sample("tcp_read_bytes_total", map[string]string{"direction": "inbound", "peer": "src"}); n < 100 {
		t.Errorf("inbound tcp_read_bytes_total = %v: the HTTP connection's bytes are not counted", n)
	}
	pc := m.a.clients.peers[peerKey{addr: netipAddr(t, app.addr), id: pkiID(t, serverSA)}]
	if pc == nil || len(pc.conns) != 1 {
		t.Errorf("A has %v connections to B, want 1", pc)
	}
	// Metrics on both sides.
	out := map[string]string{"direction": "outbound", "authority": app.addr, "tls": "true", "server_id": serverSA}
	if got := m.a.metrics.Sample("request_total", out); got != 3 {
		t.Errorf("A request_total = %v, want 3", got)
	}
	in := map[string]string{"direction": "inbound", "tls": "true", "client_id": clientSA, "status_code": "200", "classification": "success"}
	if got := m.b.metrics.Sample("response_total", in); got != 3 {
		t.Errorf("B response_total = %v, want 3", got)
	}
}

func TestChunkedAndStatusCodes(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	client := m.httpClient(false)

	// A chunked request body (unknown length) and a chunked, flushed response.
	pr, pw := io.Pipe()
	go func() {
		for i := range 10 {
			fmt.Fprintf(pw, "part%d", i)
		}
		pw.Close()
	}()
	resp, err := client.Post("http://"+app.addr+"/upload", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "POST /upload 50" {
		t.Errorf("chunked upload: %q", body)
	}
	chunked, body2 := get(t, client, "http://"+app.addr+"/chunks")
	if body2 != "chunk0;chunk1;chunk2;chunk3;chunk4;" || len(chunked.TransferEncoding) == 0 {
		t.Errorf("chunked response: %q %v", body2, chunked.TransferEncoding)
	}
	for _, code := range []int{201, 404, 503} {
		resp, _ := get(t, client, fmt.Sprintf("http://%s/status/%d", app.addr, code))
		if resp.StatusCode != code {
			t.Errorf("status %d came back as %d", code, resp.StatusCode)
		}
	}
	labels := map[string]string{"direction": "outbound", "status_code": "503", "classification": "failure"}
	if got := m.a.metrics.Sample("response_total", labels); got != 1 {
		t.Errorf("response_total 503 failure = %v", got)
	}
	if got := m.a.metrics.Sample("response_total", map[string]string{"direction": "outbound", "status_code": "404", "classification": "success"}); got != 1 {
		t.Errorf("response_total 404 success = %v", got)
	}
	if got := m.a.metrics.Sample("response_latency_ms", map[string]string{"direction": "outbound", "status_code": "201"}); got != 1 {
		t.Errorf("response_latency_ms count for 201 = %v", got)
	}
	if got := m.a.metrics.Bucket("response_latency_ms", map[string]string{"direction": "outbound", "status_code": "201"}, 50000); got != 1 {
		t.Errorf("response_latency_ms le=50000 bucket for 201 = %v", got)
	}
}

func TestHTTP2PriorKnowledge(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	resp, body := get(t, m.httpClient(true), "http://"+app.addr+"/h2")
	if resp.ProtoMajor != 2 || body != "GET /h2 0" {
		t.Fatalf("%s %q", resp.Proto, body)
	}
	if got := resp.Header.Get("X-Seen-Proto"); got != "HTTP/2.0" {
		t.Errorf("the app saw %s, want HTTP/2.0", got)
	}
	if got := resp.Header.Get("X-Seen-Client-Id"); got != clientSA {
		t.Errorf("client id %q", got)
	}
}

func TestPassthroughWithoutDiscovery(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t) // not in discovery: A sends it straight to the app
	resp, body := get(t, m.httpClient(false), "http://"+app.addr+"/direct")
	if resp.StatusCode != http.StatusOK || body != "GET /direct 0" || resp.Header.Get("X-Seen-Client-Id") != "" {
		t.Fatalf("%d %q client id %q", resp.StatusCode, body, resp.Header.Get("X-Seen-Client-Id"))
	}
	if got := m.a.metrics.Sample("request_total", map[string]string{"direction": "outbound", "tls": "no_identity"}); got != 1 {
		t.Errorf("request_total{tls=no_identity} = %v", got)
	}
}

func TestPlaintextInbound(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	// A client without a proxy talks to B directly, claiming an identity.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return m.natB.dialVia(m.b.InboundAddr().String())(ctx, "tcp", addr)
	}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+app.addr+"/x", nil)
	req.Header.Set(ClientIDHeader, clientSA)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Seen-Client-Id"); got != "" {
		t.Errorf("an unverified client id reached the app: %q", got)
	}
	if got := m.b.metrics.Sample("request_total", map[string]string{"direction": "inbound", "tls": "no_identity"}); got != 1 {
		t.Errorf("request_total{inbound,no_identity} = %v", got)
	}
}

func TestLargeStreamedBodyKeepsMemoryFlat(t *testing.T) {
	m := newMesh(t, meshConfig{})
	app := startApp(t)
	m.serve(t, app.addr, serverSA)
	client := m.httpClient(false)
	// Warm up the connections and pools first.
	get(t, client, "http://"+app.addr+"/warm")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const size = 100 << 20
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	resp, err := client.Post("http://"+app.addr+"/upload", "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		close(done)
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// And the other way: a 100 MB response.
	resp, err = client.Get(fmt.Sprintf("http://%s/big?n=%d", app.addr, size))
	if err != nil {
		close(done)
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(done)
	wg.Wait()
	if string(body) != fmt.Sprintf("POST /upload %d", size) || n != size {
		t.Fatalf("upload answered %q, download got %d bytes", body, n)
	}
	growth := int64(peak) - int64(before.HeapInuse)
	t.Logf("heap in use: %d MB before, peak %d MB", before.HeapInuse>>20, peak>>20)
	// Client, server and both proxies share this heap; 100 MB buffered anywhere would show.
	if growth > 24<<20 {
		t.Errorf("heap grew by %d MB while streaming 100 MB each way", growth>>20)
	}
	if got := m.b.metrics.Sample("response_total", map[string]string{"direction": "inbound", "classification": "success"}); got != 3 {
		t.Errorf("B response_total = %v, want 3", got)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
	}{{"mTLS", serverSA}, {"plaintext", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(t, meshConfig{})
			app := startApp(t)
			m.serve(t, app.addr, tc.id)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := m.dial(ctx, "tcp", app.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nfirst\n", app.addr)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			// A 101 has no body: what follows it on c is the upgraded stream, read through br.
			resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" {
				t.Fatalf("upgrade answered %d %v", resp.StatusCode, resp.Header)
			}
			wantID := ""
			if tc.id != "" {
				wantID = clientSA
			}
			if got := resp.Header.Get("X-Seen-Client-Id"); got != wantID {
				t.Errorf("the app saw client id %q, want %q", got, wantID)
			}
			fmt.Fprint(c, "second\n")
			_ = c.(*net.TCPConn).CloseWrite()
			rest, _ := io.ReadAll(br)
			if string(rest) != "echo first\necho second\nbye\n" {
				t.Errorf("after the upgrade: %q", rest)
			}
		})
	}
}

func TestOpaqueServerSpeaksFirst(t *testing.T) {
	banner := func(c net.Conn) {
		fmt.Fprint(c, "220 ready\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "250 %s", line)
	}
	addr := tcpServer(t, banner)
	port := netipAddr(t, addr).Port()
	for _, tc := range []struct {
		name      string
		plaintext bool
	}{{"mTLS", false}, {"plaintext", true}} {
		t.Run(tc.name, func(t *testing.T) {
			// The default detection timeout (10 s) would make the test fail its deadline
			// below if the opaque port were not honoured.
			m := newMesh(t, meshConfig{opaquePorts: []uint16{port}, plaintext: tc.plaintext})
			id := serverSA
			if tc.plaintext {
				id = ""
			}
			m.serve(t, addr, id)
			c := m.openTCP(t, addr, 5*time.Second)
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil || line != "220 ready\r\n" {
				t.Fatalf("banner %q, %v", line, err)
			}
			fmt.Fprint(c, "HELO mesh\n")
			line, _ = br.ReadString('\n')
			if line != "250 HELO mesh\n" {
				t.Errorf("reply %q", line)
			}
			c.Close()
			tlsLabel := "true"
			if tc.plaintext {
				tlsLabel = "false"
			}
			labels := map[string]string{"direction": "outbound", "peer": "dst", "tls": tlsLabel}
			waitFor(t, "the outbound connection to close", func() bool { return m.a.metrics.Sample("tcp_close_total", labels) == 1 })
			if got := m.a.metrics.Sample("tcp_read_bytes_total", labels); got != float64(len("220 ready\r\n250 HELO mesh\n")) {
				t.Errorf("tcp_read_bytes_total{dst} = %v", got)
			}
			if !tc.plaintext {
				in := map[string]string{"direction": "inbound", "peer": "src", "client_id": clientSA, "tls": "true"}
				waitFor(t, "the inbound connection to close", func() bool { return m.b.metrics.Sample("tcp_close_total", in) == 1 })
			}
		})
	}
}

func TestOpaqueHalfClose(t *testing.T) {
	// The server reads until the client is done sending, then answers: only a half-close
	// passed through both proxies lets it answer.
	addr := tcpServer(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
	})
	m := newMesh(t, meshConfig{})
	m.serve(t, addr, serverSA)
	c := m.openTCP(t, addr, 20*time.Second)
	payload := strings.Repeat("opaque bytes\n", 10000)
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != fmt.Sprintf("got %d bytes", len(payload)) {
		t.Fatalf("reply %q, %v", reply, err)
	}
}

func TestGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthSrv)
	testgrpc.RegisterTestServiceServer(srv, testService{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	m := newMesh(t, meshConfig{})
	m.serve(t, ln.Addr().String(), serverSA)
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return m.dial(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%v %v", resp, err)
		}
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("unknown service: %v, want NotFound", err)
		}
		failures := m.a.metrics.Sample("response_total", map[string]string{"direction": "outbound", "classification": "failure"})
		if failures != 1 {
			t.Errorf("a gRPC NotFound is a failure: %v failures counted", failures)
		}
	})
	t.Run("large unary", func(t *testing.T) {
		payload := make([]byte, 3<<20)
		resp, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{
			ResponseSize: 3 << 20, Payload: &testgrpc.Payload{Body: payload},
		}, grpc.MaxCallRecvMsgSize(8<<20))
		if err != nil || len(resp.GetPayload().GetBody()) != 3<<20 {
			t.Fatalf("%v", err)
		}
	})
	t.Run("status and trailers", func(t *testing.T) {
		var trailer metadata.MD
		_, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{
			ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "quota"},
		}, grpc.Trailer(&trailer))
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "quota" {
			t.Errorf("status %v", err)
		}
	})
	t.Run("bidi streaming", func(t *testing.T) {
		stream, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			size := int32(1 + i*1000)
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: size}}}); err != nil {
				t.Fatal(err)
			}
			// Each reply arrives before the next request is sent: both directions stream.
			resp, err := stream.Recv()
			if err != nil || int32(len(resp.GetPayload().GetBody())) != size {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("end of stream: %v", err)
		}
	})
}

// testService implements the calls of grpc_testing's TestService the tests use.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range req.GetResponseParameters() {
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

// TestProxyAddsNoUserAgent: the application sees the client's User-Agent, and none when the
// client sent none (net/http's clients, between the proxies and to the application, add
// "Go-http-client/..." to a request without one).
func TestProxyAddsNoUserAgent(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		h2   bool
	}{
		{"HTTP/1 over mTLS", serverSA, false},
		{"HTTP/2 over mTLS", serverSA, true},
		{"HTTP/1 plaintext", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(t, meshConfig{})
			app := startApp(t)
			m.serve(t, app.addr, tc.id)
			client := m.httpClient(tc.h2)
			for _, ua := range []string{"", "curl/8.5.0"} {
				req, _ := http.NewRequest(http.MethodGet, "http://"+app.addr+"/ua", nil)
				if ua == "" {
					req.Header["User-Agent"] = nil // the test's own client adds none either
				} else {
					req.Header.Set("User-Agent", ua)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := ""
				if ua != "" {
					want = "[" + ua + "]"
				}
				if got := resp.Header.Get("X-Seen-User-Agent"); got != want {
					t.Errorf("sent User-Agent %q: the app saw %q, want %q", ua, got, want)
				}
			}
		})
	}
}
