package dataplane

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Over MaxInFlightRequests a request is answered 503 overloaded at once, without reaching the
// app; once the requests in flight finish, requests are served again.
func TestRequestsOverTheInFlightLimitAreShed(t *testing.T) {
	m := newMesh(t, meshConfig{tweakA: func(o *Options) { o.MaxInFlightRequests = 3 }})
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // before srv.Close, which waits for the handlers
	app := srv.Listener.Addr().String()
	m.serve(t, app, serverSA)
	client := m.httpClient(false)

	var held sync.WaitGroup
	for range 3 {
		held.Add(1)
		go func() {
			defer held.Done()
			resp, err := client.Get("http://" + app + "/hold")
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	for range 3 {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("three requests did not reach the app")
		}
	}
	resp, body := get(t, client, "http://"+app+"/over")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(ProxyErrorHeader) != reasonOverloaded {
		t.Errorf("the fourth request got %d %q (%s), want 503 overloaded", resp.StatusCode, resp.Header.Get(ProxyErrorHeader), body)
	}
	if n := m.a.metrics.Sample("requests_shed_total", map[string]string{"direction": "outbound"}); n != 1 {
		t.Errorf("requests_shed_total{outbound} = %v, want 1", n)
	}
	unblock()
	held.Wait()
	waitFor(t, "the in-flight count to return to zero", func() bool { return m.a.inFlight.Load() == 0 })
	if resp, body := get(t, client, "http://"+app+"/after"); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Errorf("after the load: %d %q", resp.StatusCode, body)
	}
}
