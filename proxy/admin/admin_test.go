package admin

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func TestAdmin(t *testing.T) {
	var ready, shutdowns atomic.Bool
	done := make(chan struct{})
	s, err := New(Options{
		Ready:    ready.Load,
		Metrics:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("request_total 1\n")) }),
		Shutdown: func() { shutdowns.Store(true); close(done) },
		PodIP:    netip.MustParseAddr("10.1.2.3"),
	})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, target, host, remote string) (int, string) {
		req := httptest.NewRequest(method, target, nil)
		req.Host = host
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	local := "127.0.0.1:5000"
	for _, tc := range []struct {
		method, target, host, remote string
		want                         int
	}{
		{"GET", "/live", "localhost:4191", local, 200},
		{"GET", "/ready", "127.0.0.1:4191", local, 503},
		{"GET", "/metrics", "10.1.2.3:4191", "10.9.9.9:1234", 200},
		{"GET", "/metrics", "[::1]:4191", local, 200},
		{"GET", "/metrics", "evil.example.com", local, 403},
		{"GET", "/metrics", "10.1.2.4:4191", local, 403},
		{"GET", "/shutdown", "localhost", local, 405},
		{"POST", "/shutdown", "10.1.2.3", "10.9.9.9:1234", 403},
		{"GET", "/debug/pprof/", "localhost", local, 404},
	} {
		if code, body := do(tc.method, tc.target, tc.host, tc.remote); code != tc.want {
			t.Errorf("%s %s Host %s from %s: %d %q, want %d", tc.method, tc.target, tc.host, tc.remote, code, body, tc.want)
		}
	}
	ready.Store(true)
	if code, _ := do("GET", "/ready", "localhost", local); code != 200 {
		t.Errorf("/ready when ready: %d", code)
	}
	if _, body := do("GET", "/metrics", "localhost", local); !strings.Contains(body, "request_total") {
		t.Errorf("/metrics: %q", body)
	}
	if code, _ := do("POST", "/shutdown", "localhost", local); code != 200 {
		t.Errorf("/shutdown: %d", code)
	}
	<-done
	if !shutdowns.Load() {
		t.Error("shutdown was not called")
	}

	withPprof, _ := New(Options{Ready: ready.Load, Metrics: http.NotFoundHandler(), Shutdown: func() {}, Pprof: true})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil)
	req.Host = "localhost"
	withPprof.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("pprof: %d", rec.Code)
	}
}

func TestIdentityCertificate(t *testing.T) {
	leaf, inter := []byte("leaf-der"), []byte("intermediate-der")
	var cert atomic.Pointer[tls.Certificate]
	s, err := New(Options{
		Ready: func() bool { return true }, Metrics: http.NotFoundHandler(), Shutdown: func() {},
		PodName: "web-7d9f8b6c5-abcde",
		Certificate: func() (*tls.Certificate, error) {
			if c := cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no certificate")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(host string) (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/identity/certificate", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("localhost"); code != http.StatusServiceUnavailable {
		t.Errorf("before a certificate: %d, want 503", code)
	}
	cert.Store(&tls.Certificate{Certificate: [][]byte{leaf, inter}})
	// The API server's pod proxy passes its own Host on: the chain is served whatever the Host.
	code, body := get("192.0.2.2:6443")
	if code != http.StatusOK {
		t.Fatalf("through the pod proxy: %d %q", code, body)
	}
	first, rest := pem.Decode([]byte(body))
	second, _ := pem.Decode(rest)
	if first == nil || second == nil || string(first.Bytes) != string(leaf) || string(second.Bytes) != string(inter) {
		t.Errorf("the chain is not the leaf then the intermediate: %q", body)
	}
	// Only the chain: the rest still checks the Host.
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Host = "192.0.2.2:6443"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("/metrics with a foreign Host: %d, want 403", rec.Code)
	}
	req = httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Host = "web-7d9f8b6c5-abcde:4191"
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code == http.StatusForbidden {
		t.Error("the pod's name as Host is refused")
	}
	noID, _ := New(Options{Ready: func() bool { return true }, Metrics: http.NotFoundHandler(), Shutdown: func() {}})
	req = httptest.NewRequest(http.MethodGet, "/identity/certificate", nil)
	req.Host = "localhost"
	rec = httptest.NewRecorder()
	noID.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("without identity: %d, want 404", rec.Code)
	}
}

// /ready carries the detail of a degraded state, and stays 200 when only that is wrong.
func TestReadyDetail(t *testing.T) {
	var ready atomic.Bool
	var detail atomic.Value
	detail.Store("")
	s, err := New(Options{Ready: ready.Load, ReadyDetail: func() string { return detail.Load().(string) },
		Metrics: http.NotFoundHandler(), Shutdown: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		req := httptest.NewRequest(http.MethodGet, "/ready", nil)
		req.Host = "localhost"
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	ready.Store(true)
	if code, body := get(); code != 200 || body != "ready" {
		t.Errorf("connected: %d %q, want 200 \"ready\"", code, body)
	}
	detail.Store("destination disconnected for 42s, serving last known state")
	if code, body := get(); code != 200 || body != "ready; destination disconnected for 42s, serving last known state" {
		t.Errorf("disconnected: %d %q, want 200 with the detail", code, body)
	}
	ready.Store(false)
	if code, body := get(); code != 503 || body != "not ready; destination disconnected for 42s, serving last known state" {
		t.Errorf("not ready: %d %q", code, body)
	}
}
