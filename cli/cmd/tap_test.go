package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lightmesh/lightmesh/internal/tap"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

var tapT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// tapLines is what the fake tap API streams: events of two pods, a stream error, and the
// proxy's own answer to a request it could not forward.
var tapLines = []any{
	tap.Event{Time: tapT0, Pod: "web-1", Namespace: "shop", Direction: tap.Inbound, Method: "GET", Authority: "web.shop.svc.cluster.local:80",
		Path: "/api/users", Status: 200, LatencyMs: 2.143, SourceIdentity: "spiffe://cluster.local/ns/shop/sa/client",
		DestinationIdentity: "spiffe://cluster.local/ns/shop/sa/web", SourceAddr: "10.0.0.9:41000", DestinationAddr: "10.0.0.5:8080"},
	tap.Event{Time: tapT0, Pod: "web-2", Namespace: "shop", Direction: tap.Inbound, Method: "POST", Authority: "web.shop.svc.cluster.local:80",
		Path: "/api/orders", Status: 503, LatencyMs: 0.4, SourceAddr: "10.0.0.7:5000", DestinationAddr: "10.0.0.6:8080",
		DestinationIdentity: "spiffe://cluster.local/ns/shop/sa/web"},
	tap.StreamError{StreamError: "cannot tap its proxy at 10.0.0.8:4190: connection refused", Pod: "web-3"},
	tap.Event{Time: tapT0, Pod: "web-1", Namespace: "shop", Direction: tap.Outbound, Method: "GET", Authority: "db.shop.svc.cluster.local:5000",
		Path: "/rows", Status: 502, Error: "connection-refused", LatencyMs: 1250, SourceIdentity: "spiffe://cluster.local/ns/shop/sa/web",
		SourceAddr: "10.0.0.5:33000", DestinationAddr: "10.0.0.11:5000"},
	tap.Event{Time: tapT0, Pod: "web-2", Namespace: "shop", Direction: tap.Inbound, Method: "GET", Authority: "web.shop.svc.cluster.local:80",
		Path: "/api/users", Status: 200, LatencyMs: 11.5, SourceIdentity: "spiffe://cluster.local/ns/shop/sa/client",
		DestinationIdentity: "spiffe://cluster.local/ns/shop/sa/web", SourceAddr: "10.0.0.9:41002", DestinationAddr: "10.0.0.6:8080"},
}

// fakeTapAPI answers the service-proxy path of the tap API with lines, flushing each, and
// records the queries; resource deploy/missing gets the API's 404.
func fakeTapAPI(t *testing.T, lines []any, queries *[]url.Values) func() (rest.Interface, string, error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/lightmesh/services/stats:8085/proxy"+tap.APIPath {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"services \"stats\" not found"}`))
			return
		}
		*queries = append(*queries, r.URL.Query())
		if r.URL.Query().Get("resource") == "deployment/missing" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "no running meshed pod of deployment/missing in namespace shop"})
			return
		}
		w.Header().Set("Content-Type", tap.ContentType)
		enc := json.NewEncoder(w)
		for _, l := range lines {
			_ = enc.Encode(l)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return func() (rest.Interface, string, error) {
		client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
		if err != nil {
			return nil, "", err
		}
		return client.CoreV1().RESTClient(), "shop", nil
	}
}

func runTapArgs(t *testing.T, newClient func() (rest.Interface, string, error), args ...string) (string, string, error) {
	t.Helper()
	opts := newTapOptions()
	opts.newClient = newClient
	return executeTap(t, newTapCmdWith(opts), args)
}

func runTopArgs(t *testing.T, opts *topOptions, args ...string) (string, string, error) {
	t.Helper()
	return executeTap(t, newTopCmdWith(opts), args)
}

func executeTap(t *testing.T, c interface {
	SetOut(io.Writer)
	SetErr(io.Writer)
	SetArgs([]string)
	ExecuteContext(context.Context) error
}, args []string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&errOut)
	c.SetArgs(args)
	err := c.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestTapGolden(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		query url.Values
	}{
		{"tap.text", []string{"deploy/web", "--max", "10"}, url.Values{"namespace": {"shop"}, "resource": {"deployment/web"}, "max": {"10"}, "duration": {"30s"}}},
		{"tap.json", []string{"deployment", "web", "-n", "front", "-o", "json", "--path", "/api", "--method", "post", "--authority", "web:80", "--direction", "inbound", "--duration", "1m"},
			url.Values{"namespace": {"front"}, "resource": {"deployment/web"}, "max": {"100"}, "duration": {"1m0s"}, "path-prefix": {"/api"}, "method": {"POST"}, "authority": {"web:80"}, "direction": {"inbound"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var queries []url.Values
			out, errOut, err := runTapArgs(t, fakeTapAPI(t, tapLines, &queries), tc.args...)
			if err != nil {
				t.Fatalf("mesh tap %s: %v (stderr %q)", strings.Join(tc.args, " "), err, errOut)
			}
			if len(queries) != 1 || queries[0].Encode() != tc.query.Encode() {
				t.Errorf("queries = %v, want %v", queries, tc.query)
			}
			if want := "tap: pod web-3: cannot tap its proxy at 10.0.0.8:4190: connection refused\n"; errOut != want {
				t.Errorf("stderr %q, want %q", errOut, want)
			}
			golden.Assert(t, tc.name, []byte(out))
		})
	}
}

func TestTapErrors(t *testing.T) {
	var queries []url.Values
	client := fakeTapAPI(t, nil, &queries)
	if _, errOut, err := runTapArgs(t, client, "pod/web-1", "--duration", "1s"); err != nil || errOut != "No requests seen within 1s.\n" {
		t.Errorf("no events: err %v, stderr %q", err, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service/web"}, `unknown resource type "service"`},
		{[]string{"deploy/web", "web"}, "give the name once"},
		{[]string{"deploy/"}, "write TYPE/NAME"},
		{[]string{"deploy/web", "-o", "yaml"}, "--output"},
		{[]string{"deploy/web", "--max", "0"}, "max"},
		{[]string{"deploy/web", "--duration", "1h"}, "duration"},
		{[]string{"deploy/web", "--direction", "up"}, "direction"},
		{[]string{"deploy/web", "--path", "api"}, "path"},
		{[]string{"deploy/missing"}, "the tap API refused the tap: no running meshed pod of deployment/missing"},
		{[]string{"deploy/web", "--control-plane-namespace", "mesh"}, "no stats service in namespace mesh"},
	} {
		if _, _, err := runTapArgs(t, client, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mesh tap %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestTopGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"top.table", []string{"deploy/web"}},
		{"top.json", []string{"deploy", "web", "-o", "json"}},
		{"top-rows.table", []string{"deploy/web", "--rows", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var queries []url.Values
			opts := newTopOptions()
			opts.newClient = fakeTapAPI(t, tapLines, &queries)
			out, errOut, err := runTopArgs(t, opts, tc.args...)
			if err != nil {
				t.Fatalf("mesh top %s: %v (stderr %q)", strings.Join(tc.args, " "), err, errOut)
			}
			if len(queries) != 1 || queries[0].Get("max") != "10000" || queries[0].Get("duration") != "30s" {
				t.Errorf("queries = %v, want max 10000 for 30s", queries)
			}
			golden.Assert(t, tc.name, []byte(out))
		})
	}
}

// In a terminal the table is redrawn (screen cleared) while the tap runs, and once more at
// its end.
func TestTopRedrawsInATerminal(t *testing.T) {
	var queries []url.Values
	opts := newTopOptions()
	opts.newClient = fakeTapAPI(t, tapLines, &queries)
	opts.isTerminal = func(io.Writer) bool { return true }
	out, _, err := runTopArgs(t, opts, "deploy/web")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, clearScreen); n < 1 || !strings.Contains(out, "mesh top deployment/web (done, 4 requests)") ||
		!strings.Contains(out, "tap: pod web-3:") || !strings.Contains(out, "/api/users") {
		t.Errorf("terminal output (%d redraws):\n%s", n, out)
	}
}
