package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// do sends one request to h and returns the status, the x-version header and the JSON body.
func do(t *testing.T, h http.Handler, method, path, body string) (int, string, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, r))
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s %s: the answer is not a JSON object (%v): %q", method, path, err, rec.Body.String())
	}
	return rec.Code, rec.Header().Get("x-version"), m
}

func TestConfigFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cfg, err := configFromEnv(env())
	if err != nil || cfg.Version != "v1" || cfg.FailRate != 0 || cfg.FailEvery != 0 {
		t.Errorf("defaults: %+v, %v; want v1 without failures", cfg, err)
	}
	cfg, err = configFromEnv(env("VERSION", "v2", "FAIL_RATE", "0.25", "FAIL_EVERY", "3"))
	if err != nil || cfg.Version != "v2" || cfg.FailRate != 0.25 || cfg.FailEvery != 3 {
		t.Errorf("got %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{{"VERSION", "v3"}, {"FAIL_RATE", "1.5"}, {"FAIL_RATE", "x"}, {"FAIL_RATE", "-0.1"}, {"FAIL_EVERY", "-1"}, {"FAIL_EVERY", "2.5"}} {
		if _, err := configFromEnv(env(bad...)); err == nil {
			t.Errorf("%s=%s: no error", bad[0], bad[1])
		}
	}
}

func TestVersions(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			h := newHandler(config{Version: version})

			code, xv, m := do(t, h, "GET", "/api/users/2", "")
			if code != 200 || xv != version || m["version"] != version || m["id"] != "2" || m["name"] != "Bob" {
				t.Errorf("GET /api/users/2: %d x-version=%q %v", code, xv, m)
			}
			email, hasEmail := m["email"]
			if version == "v1" && hasEmail {
				t.Errorf("v1 shows an email: %v", m)
			}
			if version == "v2" && email != "bob@example.com" {
				t.Errorf("v2 shows email %v, want bob@example.com", email)
			}

			code, xv, m = do(t, h, "GET", "/api/users", "")
			users, _ := m["users"].([]any)
			if code != 200 || xv != version || m["version"] != version || len(users) != len(seedUsers) {
				t.Fatalf("GET /api/users: %d x-version=%q %v", code, xv, m)
			}
			if first := users[0].(map[string]any); first["id"] != "1" || first["version"] != version {
				t.Errorf("first user %v", first)
			}

			code, _, m = do(t, h, "POST", "/api/users", `{"name":"Frank","email":"frank@example.com"}`)
			if code != 201 || m["id"] != "6" || m["name"] != "Frank" || m["version"] != version {
				t.Fatalf("POST /api/users: %d %v", code, m)
			}
			code, _, m = do(t, h, "PUT", "/api/users/6", `{"name":"Franz"}`)
			if code != 200 || m["name"] != "Franz" {
				t.Errorf("PUT /api/users/6: %d %v", code, m)
			}
			if _, _, m = do(t, h, "GET", "/api/users/6", ""); m["name"] != "Franz" {
				t.Errorf("after PUT: %v", m)
			}

			for _, c := range []struct {
				method, path, body string
				want               int
			}{
				{"GET", "/api/users/99", "", 404},
				{"GET", "/api/users/abc", "", 404},
				{"PUT", "/api/users/99", `{"name":"x"}`, 404},
				{"POST", "/api/users", `{"email":"x@example.com"}`, 400},
				{"POST", "/api/users", `not json`, 400},
				{"DELETE", "/api/users/1", "", 405},
				{"PUT", "/api/users", `{}`, 405},
				{"GET", "/api/nothing", "", 404},
				{"GET", "/healthz", "", 200},
			} {
				code, xv, m := do(t, h, c.method, c.path, c.body)
				if code != c.want || xv != version || m["version"] != version {
					t.Errorf("%s %s: %d x-version=%q %v; want %d with version %s", c.method, c.path, code, xv, m, c.want, version)
				}
			}
		})
	}
}

func TestFailEvery(t *testing.T) {
	h := newHandler(config{Version: "v2", FailEvery: 3})
	var got []int
	for i := range 9 {
		if i == 4 {
			// /healthz neither fails nor counts.
			if code, _, _ := do(t, h, "GET", "/healthz", ""); code != 200 {
				t.Errorf("/healthz answered %d", code)
			}
		}
		code, xv, m := do(t, h, "GET", "/api/users/1", "")
		got = append(got, code)
		if code == 500 && (xv != "v2" || m["version"] != "v2" || m["error"] == nil) {
			t.Errorf("a failure without version or error: x-version=%q %v", xv, m)
		}
	}
	want := []int{200, 200, 500, 200, 200, 500, 200, 200, 500}
	if !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}

func TestFailRate(t *testing.T) {
	// A fixed sequence of "random" numbers: those below the rate fail.
	seq := []float64{0.1, 0.9, 0.29, 0.3, 0.5}
	i := 0
	h := newHandler(config{Version: "v1", FailRate: 0.3, Rand: func() float64 { f := seq[i%len(seq)]; i++; return f }})
	var got []int
	for range seq {
		code, _, _ := do(t, h, "GET", "/api/users", "")
		got = append(got, code)
	}
	if want := []int{500, 200, 500, 200, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	// The real random source: rate 1 always fails, rate 0 never does.
	always, never := newHandler(config{Version: "v1", FailRate: 1}), newHandler(config{Version: "v1"})
	for range 20 {
		if code, _, _ := do(t, always, "GET", "/api/users/1", ""); code != 500 {
			t.Fatalf("FAIL_RATE=1 answered %d", code)
		}
		if code, _, _ := do(t, never, "GET", "/api/users/1", ""); code != 200 {
			t.Fatalf("FAIL_RATE=0 answered %d", code)
		}
	}
}

// TestServe runs the whole server on loopback: HTTP answers, the gRPC health service says
// SERVING, and cancelling the context stops both.
func TestServe(t *testing.T) {
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, httpLn, grpcLn, config{Version: "v2"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()

	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + httpLn.Addr().String() + "/api/users/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("x-version") != "v2" {
		t.Errorf("GET /api/users/1: %d x-version=%q", resp.StatusCode, resp.Header.Get("x-version"))
	}

	conn, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for _, name := range []string{"", serviceName} {
		rpcCtx, rpcCancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := hc.Check(rpcCtx, &healthpb.HealthCheckRequest{Service: name})
		rpcCancel()
		if err != nil {
			t.Fatalf("health check %q: %v", name, err)
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q is %v, want SERVING", name, res.GetStatus())
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return within 20s of its context's end")
	}
}

func TestDelay(t *testing.T) {
	h := newHandler(config{Version: "v1"})
	if code, _, m := do(t, h, "GET", "/api/users/1?delay=soon", ""); code != http.StatusBadRequest || m["error"] == nil {
		t.Errorf("a bad delay answered %d %v, want 400 with an error", code, m)
	}
	if code, _, _ := do(t, h, "GET", "/api/users/1?delay=2m", ""); code != http.StatusBadRequest {
		t.Errorf("a delay over the cap answered %d, want 400", code)
	}
	// A client that gives up ends the wait: the handler returns without answering.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/users/1?delay=50s", nil).WithContext(ctx))
	if rec.Body.Len() != 0 {
		t.Errorf("a cancelled delayed request was answered: %q", rec.Body.String())
	}
	if code, _, m := do(t, h, "GET", "/api/users/1?delay=1ms", ""); code != http.StatusOK || m["id"] != "1" {
		t.Errorf("a delayed request answered %d %v", code, m)
	}
}
