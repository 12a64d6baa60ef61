package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUsers is a user-service stand-in: user 1 exists, every other id is 404; with failing
// set it answers 500. It records the x-request-id of each request.
type fakeUsers struct {
	mu         sync.Mutex
	version    string
	failing    bool
	requestIDs []string
	paths      []string
}

func (f *fakeUsers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requestIDs = append(f.requestIDs, r.Header.Get("x-request-id"))
	f.paths = append(f.paths, r.Method+" "+r.URL.Path)
	w.Header().Set("x-version", f.version)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case f.failing:
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":"injected failure","version":"`+f.version+`"}`)
	case r.URL.Path == "/api/users/1":
		_, _ = io.WriteString(w, `{"id":"1","name":"Alice","email":"alice@example.com","version":"`+f.version+`"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no user","version":"`+f.version+`"}`)
	}
}

func (f *fakeUsers) set(version string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version, f.failing = version, failing
}

func setup(t *testing.T) (*fakeUsers, http.Handler) {
	t.Helper()
	fake := &fakeUsers{version: "v2"}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	h := newHandler(config{UserServiceURL: srv.URL + "/", Timeout: 5 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return fake, h
}

func do(t *testing.T, h http.Handler, method, path, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("x-request-id", "req-42")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s %s: the answer is not a JSON object (%v): %q", method, path, err, rec.Body.String())
	}
	return rec, m
}

func TestOrderEmbedsUser(t *testing.T) {
	fake, h := setup(t)
	rec, m := do(t, h, "POST", "/api/orders", `{"userId":"1","item":"book","quantity":2}`)
	if rec.Code != 201 || m["id"] != "1" || m["userId"] != "1" || m["item"] != "book" || m["quantity"] != 2.0 {
		t.Fatalf("POST /api/orders: %d %v", rec.Code, m)
	}
	user, _ := m["user"].(map[string]any)
	if user["name"] != "Alice" || user["email"] != "alice@example.com" || user["version"] != "v2" {
		t.Errorf("embedded user %v", m["user"])
	}
	if m["userVersion"] != "v2" || rec.Header().Get("x-user-version") != "v2" {
		t.Errorf("userVersion %v, x-user-version %q; want v2", m["userVersion"], rec.Header().Get("x-user-version"))
	}
	if loc := rec.Header().Get("Location"); loc != "/api/orders/1" {
		t.Errorf("Location %q", loc)
	}

	// GET asks user-service again: now v1 answers.
	fake.set("v1", false)
	rec, m = do(t, h, "GET", "/api/orders/1", "")
	if rec.Code != 200 || m["id"] != "1" || m["userVersion"] != "v1" || m["user"].(map[string]any)["version"] != "v1" {
		t.Errorf("GET /api/orders/1: %d %v", rec.Code, m)
	}
	// A numeric userId works too; quantity defaults to 1.
	if rec, m = do(t, h, "POST", "/api/orders", `{"userId":1,"item":"pen"}`); rec.Code != 201 || m["quantity"] != 1.0 || m["userId"] != "1" {
		t.Errorf("numeric userId: %d %v", rec.Code, m)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	want := []string{"GET /api/users/1", "GET /api/users/1", "GET /api/users/1"}
	if strings.Join(fake.paths, ",") != strings.Join(want, ",") {
		t.Errorf("user-service saw %v, want %v", fake.paths, want)
	}
	for _, id := range fake.requestIDs {
		if id != "req-42" {
			t.Errorf("x-request-id %q reached user-service, want req-42", id)
		}
	}
}

func TestUserServiceFailure(t *testing.T) {
	fake, h := setup(t)
	if rec, _ := do(t, h, "POST", "/api/orders", `{"userId":"1","item":"book"}`); rec.Code != 201 {
		t.Fatalf("POST answered %d", rec.Code)
	}
	fake.set("v2", true)
	for _, c := range [][2]string{{"POST", "/api/orders"}, {"GET", "/api/orders/1"}} {
		rec, m := do(t, h, c[0], c[1], `{"userId":"1","item":"book"}`)
		if rec.Code != 502 || m["error"] == nil || m["userServiceStatus"] != 500.0 || m["userVersion"] != "v2" {
			t.Errorf("%s %s with user-service failing: %d %v; want 502 with the error", c[0], c[1], rec.Code, m)
		}
	}
	// No answer at all (user-service gone) is a 502 too.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	h = newHandler(config{UserServiceURL: dead.URL, Timeout: 5 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if rec, m := do(t, h, "POST", "/api/orders", `{"userId":"1","item":"book"}`); rec.Code != 502 || m["error"] == nil {
		t.Errorf("user-service unreachable: %d %v; want 502", rec.Code, m)
	}
}

func TestBadRequests(t *testing.T) {
	fake, h := setup(t)
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/orders", `{"userId":"9","item":"book"}`, 422},
		{"POST", "/api/orders", `{"item":"book"}`, 400},
		{"POST", "/api/orders", `{"userId":"1"}`, 400},
		{"POST", "/api/orders", `{"userId":"1","item":"book","quantity":-1}`, 400},
		{"POST", "/api/orders", `{"userId":true,"item":"book"}`, 400},
		{"POST", "/api/orders", `nope`, 400},
		{"GET", "/api/orders/7", "", 404},
		{"GET", "/api/orders/x", "", 404},
		{"GET", "/api/orders", "", 405},
		{"DELETE", "/api/orders/1", "", 405},
		{"GET", "/elsewhere", "", 404},
		{"GET", "/healthz", "", 200},
	} {
		if rec, m := do(t, h, c.method, c.path, c.body); rec.Code != c.want {
			t.Errorf("%s %s %s: %d %v, want %d", c.method, c.path, c.body, rec.Code, m, c.want)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.paths) != 1 {
		t.Errorf("user-service was called %d times (%v); only the order for user 9 should call it", len(fake.paths), fake.paths)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := configFromEnv(env(nil))
	if err != nil || cfg.UserServiceURL != defaultUserServiceURL || cfg.Timeout != 2*time.Second {
		t.Errorf("defaults: %+v %v", cfg, err)
	}
	cfg, err = configFromEnv(env(map[string]string{"USER_SERVICE_URL": "http://localhost:1234", "USER_SERVICE_TIMEOUT": "300ms"}))
	if err != nil || cfg.UserServiceURL != "http://localhost:1234" || cfg.Timeout != 300*time.Millisecond {
		t.Errorf("got %+v %v", cfg, err)
	}
	for _, bad := range []map[string]string{{"USER_SERVICE_URL": "user-service:8080"}, {"USER_SERVICE_TIMEOUT": "2"}, {"USER_SERVICE_TIMEOUT": "-1s"}} {
		if _, err := configFromEnv(env(bad)); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
