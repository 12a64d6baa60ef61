package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOrders is an order-service stand-in: POST creates an order (answered by "v1" and "v2"
// in turn), GET answers a created order and 404 otherwise. It counts what it answered.
type fakeOrders struct {
	mu      sync.Mutex
	created int
	posts   int
	gets    int
	unknown int
	bodies  []string
}

func (f *fakeOrders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/orders":
		f.posts++
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.bodies = append(f.bodies, fmt.Sprint(in["userId"]))
		f.created++
		w.Header().Set("x-user-version", []string{"v1", "v2"}[f.created%2])
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"%d"}`, f.created)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/orders/"):
		f.gets++
		var id int
		if _, err := fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/api/orders/"), &id); err != nil || id < 1 || id > f.created {
			f.unknown++
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("x-user-version", "v1")
		fmt.Fprint(w, `{}`)
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

// failingUsers is a user-service stand-in that answers every request 500 as v2.
type failingUsers struct{ hits atomic.Int64 }

func (f *failingUsers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	w.Header().Set("x-version", "v2")
	w.WriteHeader(http.StatusInternalServerError)
}

func testOptions(orderURL, userURL string) options {
	opts := defaultOptions()
	opts.OrderURL, opts.UserURL = orderURL, userURL
	opts.RPS = 200
	opts.ReportEvery = time.Hour // only the final line
	opts.Timeout = 10 * time.Second
	return opts
}

// runBounded runs the generator and fails the test if it does not stop within a minute.
func runBounded(t *testing.T, ctx context.Context, opts options) (summary, string) {
	t.Helper()
	var out bytes.Buffer
	type result struct {
		s   summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := run(ctx, opts, &out)
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.s, out.String()
	case <-time.After(time.Minute):
		t.Fatal("the generator did not stop within a minute")
		return summary{}, ""
	}
}

func TestRunCountsAndStopsAfterDuration(t *testing.T) {
	orders, users := &fakeOrders{}, &failingUsers{}
	orderSrv, userSrv := httptest.NewServer(orders), httptest.NewServer(users)
	defer orderSrv.Close()
	defer userSrv.Close()

	opts := testOptions(orderSrv.URL, userSrv.URL)
	opts.Duration = 300 * time.Millisecond
	s, out := runBounded(t, context.Background(), opts)

	orders.mu.Lock()
	defer orders.mu.Unlock()
	o, u := s.Targets[targetOrders], s.Targets[targetUsers]
	t.Logf("summary: %s", s)
	if s.Sent < 3 {
		t.Fatalf("sent %d requests in %s at 200/s; want at least 3", s.Sent, opts.Duration)
	}
	// Every request was answered and counted before run returned.
	if int64(s.Sent) != int64(orders.posts+orders.gets)+users.hits.Load() {
		t.Errorf("sent %d, but the servers saw %d orders and %d users requests", s.Sent, orders.posts+orders.gets, users.hits.Load())
	}
	if o.OK != orders.posts+orders.gets || o.Fail != 0 || orders.unknown != 0 {
		t.Errorf("order-service: ok=%d fail=%d; the fake answered %d POST and %d GET (%d for unknown orders)", o.OK, o.Fail, orders.posts, orders.gets, orders.unknown)
	}
	if o.Versions["v1"]+o.Versions["v2"] != o.OK {
		t.Errorf("order-service versions %v do not add up to %d answers", o.Versions, o.OK)
	}
	if n := int(users.hits.Load()); u.OK != 0 || u.Fail != n || u.Codes["500"] != n || u.Versions["v2"] != n {
		t.Errorf("user-service: %+v; the fake failed %d requests as v2", u, n)
	}
	// Requests rotate: POST, GET (a POST while no order is known yet), user.
	if orders.posts == 0 || users.hits.Load() == 0 || (s.Sent >= 30 && orders.gets == 0) {
		t.Errorf("not every kind of request was sent: %d POST, %d GET, %d users", orders.posts, orders.gets, users.hits.Load())
	}
	for _, id := range orders.bodies {
		if id < "1" || id > "5" || len(id) != 1 {
			t.Errorf("an order for user %q; want 1..5", id)
		}
	}
	want := fmt.Sprintf("| user-service ok=0 fail=%d [500:%d] v2=%d", users.hits.Load(), users.hits.Load(), users.hits.Load())
	if !strings.HasPrefix(out, "traffic final ") || !strings.Contains(out, want) {
		t.Errorf("output %q; want a final line with %q", out, want)
	}
}

func TestRunCountsUnanswered(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	opts := testOptions(dead.URL, dead.URL)
	opts.Duration = 100 * time.Millisecond
	s, _ := runBounded(t, context.Background(), opts)
	o, u := s.Targets[targetOrders], s.Targets[targetUsers]
	if o.OK+u.OK != 0 || o.Fail+u.Fail != s.Sent || o.Codes["error"]+u.Codes["error"] != s.Sent {
		t.Errorf("with nothing listening: %s; want every request a failure counted as error", s)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var hits atomic.Int64
	seen := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 5 {
			once.Do(func() { close(seen) })
		}
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"id":"1"}`)
	}))
	defer srv.Close()
	go func() {
		<-seen
		cancel()
	}()
	opts := testOptions(srv.URL, srv.URL)
	opts.Duration = 0 // forever, until cancelled
	s, _ := runBounded(t, ctx, opts)
	if s.Sent < 5 || int64(s.Sent) != hits.Load() {
		t.Errorf("sent %d, the server saw %d; want at least 5 and equal", s.Sent, hits.Load())
	}
}

func TestValidate(t *testing.T) {
	if err := defaultOptions().validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for name, change := range map[string]func(*options){
		"rps 0":             func(o *options) { o.RPS = 0 },
		"negative duration": func(o *options) { o.Duration = -time.Second },
		"report-every 0":    func(o *options) { o.ReportEvery = 0 },
		"timeout 0":         func(o *options) { o.Timeout = 0 },
		"users 0":           func(o *options) { o.Users = 0 },
		"max-in-flight 0":   func(o *options) { o.MaxInFlight = 0 },
		"order-url":         func(o *options) { o.OrderURL = "order-service:8080" },
		"user-url":          func(o *options) { o.UserURL = "user-service" },
		"both urls empty":   func(o *options) { o.UserURL, o.OrderURL = "", "" },
	} {
		o := defaultOptions()
		change(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOneTargetOnly(t *testing.T) {
	var orders, users atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/orders") {
			orders.Add(1)
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"id":"1"}`)
			return
		}
		users.Add(1)
	}))
	defer srv.Close()
	o := defaultOptions()
	o.OrderURL, o.UserURL, o.RPS, o.Duration = "", srv.URL, 200, 100*time.Millisecond
	if _, err := run(context.Background(), o, io.Discard); err != nil {
		t.Fatal(err)
	}
	if orders.Load() != 0 || users.Load() == 0 {
		t.Errorf("with --order-url empty: %d orders, %d user requests; want only user requests", orders.Load(), users.Load())
	}
}

func TestSummaryString(t *testing.T) {
	s := summary{Elapsed: 10 * time.Second, Sent: 9, Dropped: 1, Targets: map[string]targetCounts{
		targetOrders: {OK: 5, Fail: 1, Codes: map[string]int{"502": 1}, Versions: map[string]int{"v2": 1, "v1": 5}},
		targetUsers:  {OK: 3, Versions: map[string]int{"v1": 3}},
	}}
	want := "elapsed=10s sent=9 dropped=1 | order-service ok=5 fail=1 [502:1] v1=5 v2=1 | user-service ok=3 fail=0 v1=3"
	if got := s.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestSendRequests(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.EscapedPath())
		w.Header().Set("x-version", "v2")
		if r.Method == http.MethodPut {
			w.Header().Set(proxyErrorHeader, "forbidden")
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	var reqs []requestLine
	for _, s := range []string{"GET " + srv.URL + "/api/users/42", "put " + srv.URL + "/api/users/42", "GET " + srv.URL + "/api/%75sers/42", "GET " + srv.URL + "//api/users/42"} {
		rl, err := parseRequestLine(s)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, rl)
	}
	var out strings.Builder
	sendRequests(context.Background(), newRequestClient(5*time.Second), reqs, false, &out)
	want := "GET " + srv.URL + "/api/users/42 -> 200 version=v2 proxy-error=-\n" +
		"PUT " + srv.URL + "/api/users/42 -> 403 version=v2 proxy-error=forbidden\n" +
		"GET " + srv.URL + "/api/%75sers/42 -> 200 version=v2 proxy-error=-\n" +
		"GET " + srv.URL + "//api/users/42 -> 200 version=v2 proxy-error=-\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	// The paths arrive as written, not cleaned.
	if got := strings.Join(paths, ","); got != "GET /api/users/42,PUT /api/users/42,GET /api/%75sers/42,GET //api/users/42" {
		t.Errorf("the server saw %s", got)
	}
	// In parallel: every request is in flight at once (the handler holds them until all came),
	// and the lines keep the order given.
	var arrived sync.WaitGroup
	arrived.Add(3)
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		arrived.Wait()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer held.Close()
	out.Reset()
	three := []requestLine{{Method: "GET", URL: held.URL + "/1"}, {Method: "GET", URL: held.URL + "/2"}, {Method: "GET", URL: held.URL + "/3"}}
	sendRequests(context.Background(), newRequestClient(5*time.Second), three, true, &out)
	if want := "GET " + held.URL + "/1 -> 418 version=- proxy-error=-\nGET " + held.URL + "/2 -> 418 version=- proxy-error=-\nGET " + held.URL + "/3 -> 418 version=- proxy-error=-\n"; out.String() != want {
		t.Errorf("parallel output:\n%s\nwant:\n%s", out.String(), want)
	}
	if _, err := parseRequestLine("GET"); err == nil {
		t.Error("a request line without URL was accepted")
	}
	// Extra headers: "Name:value" after the URL.
	var canary string
	hdr := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { canary = r.Header.Get("X-Canary") }))
	defer hdr.Close()
	rl, err := parseRequestLine("GET " + hdr.URL + "/api/users/1 x-canary:true")
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	sendRequests(context.Background(), newRequestClient(5*time.Second), []requestLine{rl}, false, &out)
	if canary != "true" || !strings.HasPrefix(out.String(), "GET "+hdr.URL+"/api/users/1 -> 200") {
		t.Errorf("header request: server saw x-canary %q; output %q", canary, out.String())
	}
	if _, err := parseRequestLine("GET " + hdr.URL + " novalue"); err == nil {
		t.Error("a header without a colon was accepted")
	}
}
