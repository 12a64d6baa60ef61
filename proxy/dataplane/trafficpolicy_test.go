package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

func TestLimiterQueuesThenOverflows(t *testing.T) {
	l := newLimiter(2, 1, 1)
	ctx := context.Background()
	r1, err1 := l.admit(ctx, 0, true)
	r2, err2 := l.admit(ctx, 0, true)
	if err1 != nil || err2 != nil {
		t.Fatalf("the first two: %v, %v", err1, err2)
	}
	// HTTP/2 requests have their own cap.
	h2, err := l.admit(ctx, 1, true)
	if err != nil {
		t.Fatalf("an HTTP/2 request under http2MaxRequests: %v", err)
	}
	// The third HTTP/1 request waits in the queue; the fourth overflows at once.
	got := make(chan error, 1)
	var r3 func()
	go func() {
		var err error
		r3, err = l.admit(ctx, 0, true)
		got <- err
	}()
	waitFor(t, "a request pending", func() bool { _, pending := l.inFlight(); return pending == 1 })
	if _, err := l.admit(ctx, 0, true); !errors.Is(err, errOverflow) {
		t.Fatalf("with the queue full: %v, want overflow", err)
	}
	if _, err := l.admit(ctx, 1, true); !errors.Is(err, errOverflow) {
		t.Fatalf("an HTTP/2 request over http2MaxRequests with the queue full: %v, want overflow", err)
	}
	if _, err := l.admit(ctx, 0, false); !errors.Is(err, errOverflow) {
		t.Fatalf("a TCP connection over maxConnections: %v, want overflow (no queue)", err)
	}
	r1() // hands its slot to the waiting request
	if err := <-got; err != nil {
		t.Fatalf("the pending request: %v", err)
	}
	if active, pending := l.inFlight(); active != 3 || pending != 0 {
		t.Fatalf("active %d pending %d, want 3 0", active, pending)
	}
	// A waiting request whose context ends leaves the queue.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		_, err := l.admit(cctx, 0, true)
		got <- err
	}()
	waitFor(t, "a request pending", func() bool { _, pending := l.inFlight(); return pending == 1 })
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled pending request: %v", err)
	}
	r2()
	r3()
	h2()
	if active, pending := l.inFlight(); active != 0 || pending != 0 {
		t.Fatalf("after every release: active %d pending %d", active, pending)
	}
	// No limit configured: admit always, without counting.
	var none *limiter
	if rel, err := none.admit(ctx, 0, true); err != nil {
		t.Fatal(err)
	} else {
		rel()
	}
}

func TestRetriableConditions(t *testing.T) {
	type answer struct {
		code   int
		header []string
	}
	status := func(code int, header ...string) *answer { return &answer{code: code, header: header} }
	refused := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Err: syscall.ECONNRESET}
	for _, tc := range []struct {
		on      []string
		codes   []uint32
		resp    *answer
		err     error
		perTry  bool
		want    bool
		comment string
	}{
		{on: []string{"5xx"}, resp: status(500), want: true},
		{on: []string{"5xx"}, resp: status(404), want: false},
		{on: []string{"5xx"}, err: reset, want: true},
		{on: []string{"gateway-error"}, resp: status(500), want: false},
		{on: []string{"gateway-error"}, resp: status(503), want: true},
		{on: []string{"gateway-error"}, err: context.DeadlineExceeded, perTry: true, want: true},
		{on: []string{"reset"}, err: reset, want: true},
		{on: []string{"reset"}, resp: status(503), want: false},
		{on: []string{"connect-failure"}, err: refused, want: true},
		{on: []string{"connect-failure"}, err: reset, want: false},
		{on: []string{"connect-failure"}, resp: status(502, ProxyErrorHeader, reasonConnectRefused), want: true, comment: "the peer proxy could not connect"},
		{on: []string{"retriable-4xx"}, resp: status(409), want: true},
		{on: []string{"retriable-4xx"}, resp: status(400), want: false},
		{on: []string{"refused-stream"}, err: errors.New("http2: stream closed with error code REFUSED_STREAM"), want: true},
		{on: []string{"retriable-status-codes"}, codes: []uint32{418}, resp: status(418), want: true},
		{on: []string{"retriable-status-codes"}, codes: []uint32{418}, resp: status(503), want: false},
		{on: []string{"unavailable"}, resp: status(200, "Grpc-Status", "14"), want: true},
		{on: []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted"}, resp: status(200, "Grpc-Status", "14"), want: false},
		{on: []string{"resource-exhausted"}, resp: status(200, "Grpc-Status", "8"), want: true},
		{on: nil, resp: status(503), want: false},
	} {
		rp := &policy.RetryPolicy{Attempts: 1, RetryOn: tc.on, RetriableStatusCodes: tc.codes}
		var resp *http.Response
		code := 0
		if tc.resp != nil {
			code = tc.resp.code
			resp = &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody}
			for i := 0; i+1 < len(tc.resp.header); i += 2 {
				resp.Header.Set(tc.resp.header[i], tc.resp.header[i+1])
			}
		}
		if got := retriable(rp, resp, tc.err, tc.perTry); got != tc.want {
			t.Errorf("retryOn %v, status %d, err %v: %v, want %v %s", tc.on, code, tc.err, got, tc.want, tc.comment)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

func TestRetryBackoffIsJitteredAndCapped(t *testing.T) {
	var next uint64
	p := &Proxy{opts: Options{random: func() uint64 { return next }}}
	for _, tc := range []struct {
		base    time.Duration
		retry   int
		ceiling time.Duration
	}{
		{0, 1, 25 * time.Millisecond},
		{0, 2, 75 * time.Millisecond},
		{0, 3, 175 * time.Millisecond},
		{0, 4, 250 * time.Millisecond},
		{0, 40, 250 * time.Millisecond},
		{100 * time.Millisecond, 1, 100 * time.Millisecond},
		{100 * time.Millisecond, 5, time.Second},
	} {
		// The draw is taken modulo ceiling+1: waits range over [0, ceiling].
		next = uint64(tc.ceiling)
		if d := p.backoff(tc.base, tc.retry); d != tc.ceiling {
			t.Errorf("base %s retry %d: the largest draw waits %s, want %s", tc.base, tc.retry, d, tc.ceiling)
		}
		next = uint64(tc.ceiling) + 1
		if d := p.backoff(tc.base, tc.retry); d != 0 {
			t.Errorf("base %s retry %d: the wait wraps at %s, want after %s", tc.base, tc.retry, d, tc.ceiling)
		}
		next = 0
		if d := p.backoff(tc.base, tc.retry); d != 0 {
			t.Errorf("base %s retry %d: the smallest draw waits %s, want 0 (full jitter)", tc.base, tc.retry, d)
		}
	}
}

func TestReplayBody(t *testing.T) {
	src := io.NopCloser(strings.NewReader("hello, world"))
	b := &replayBody{src: src}
	first := b.attempt()
	buf := make([]byte, 5)
	if n, err := first.Read(buf); n != 5 || err != nil || string(buf) != "hello" {
		t.Fatalf("first read %d %v %q", n, err, buf[:n])
	}
	// A new attempt starts from the beginning and then continues from the client.
	second := b.attempt()
	if _, err := first.Read(buf); !errors.Is(err, errStaleAttempt) {
		t.Fatalf("the old attempt read on: %v", err)
	}
	all, err := io.ReadAll(second)
	if err != nil || string(all) != "hello, world" {
		t.Fatalf("second attempt read %q, %v", all, err)
	}
	if !b.replayable() {
		t.Fatal("a small body is not replayable")
	}
	third, _ := io.ReadAll(b.attempt())
	if string(third) != "hello, world" {
		t.Fatalf("third attempt read %q", third)
	}
	// Too large: forwarded whole once, then not replayable.
	big := strings.Repeat("x", maxReplayBody+10)
	b = &replayBody{src: io.NopCloser(strings.NewReader(big))}
	if all, _ := io.ReadAll(b.attempt()); len(all) != len(big) {
		t.Fatalf("read %d bytes of %d", len(all), len(big))
	}
	if b.replayable() {
		t.Fatal("a body over maxReplayBody is replayable")
	}
}

func TestConnectionPoolConnectAndIdleTimeouts(t *testing.T) {
	deadlines := make(chan time.Duration, 4)
	pm := newPolicyMesh(t, func(o *Options) {
		o.ConnectTimeout = 30 * time.Second
		next := o.Dial
		o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == "10.1.2.3:8080" { // a silent endpoint: report the dial's deadline, fail when it passes
				d, _ := ctx.Deadline()
				deadlines <- time.Until(d)
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return next(ctx, network, addr)
		}
	})
	pm.service(t, userSvc, discovery.Endpoint{Addr: netipAddr(t, "10.1.2.3:8080")})
	pm.setPolicy(nil, policy.Destination{Host: userSvc, TrafficPolicy: policy.TrafficPolicy{ConnectionPool: &policy.ConnectionPool{
		ConnectTimeout: policy.Duration(100 * time.Millisecond), IdleTimeout: policy.Duration(7 * time.Second), MaxRequestsPerConnection: 1,
	}}})
	resp, _ := pm.get(t, "/")
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(ProxyErrorHeader) != reasonTimeout {
		t.Fatalf("status %d reason %q, want 504 timeout", resp.StatusCode, resp.Header.Get(ProxyErrorHeader))
	}
	if d := <-deadlines; d > time.Second {
		t.Fatalf("the dial's deadline was %s away: connectTimeout not applied", d)
	}
	c, err := pm.a.traffic.get(&policy.OutboundPolicy{Destinations: []policy.Destination{{Host: userSvc, TrafficPolicy: policy.TrafficPolicy{ConnectionPool: &policy.ConnectionPool{
		ConnectTimeout: policy.Duration(100 * time.Millisecond), IdleTimeout: policy.Duration(7 * time.Second), MaxRequestsPerConnection: 1,
	}}}}}, userSvc, 80, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.h1 == nil || c.h1.IdleConnTimeout != 7*time.Second || !c.h1.DisableKeepAlives || c.h2c.IdleConnTimeout != 7*time.Second {
		t.Fatal("the cluster's clients do not follow idleTimeout and maxRequestsPerConnection")
	}
}
