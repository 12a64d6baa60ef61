package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

func TestEdgesGolden(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/lightmesh/services/stats:8085/proxy/api/v1/edges" {
			http.NotFound(w, r)
			return
		}
		query = r.URL.RawQuery
		_ = json.NewEncoder(w).Encode(stats.EdgesResponse{Resource: "deployment", Window: "1m0s", Edges: []stats.Edge{
			{Src: "", Dst: "api", DstNamespace: "shop", RequestsPerSecond: f(0.2), SuccessRate: f(1)},
			{Src: "web", SrcNamespace: "shop", Dst: "api", DstNamespace: "shop", ClientID: "spiffe://cluster.local/ns/shop/sa/web", Secured: true, RequestsPerSecond: f(0.9), SuccessRate: f(8.0 / 9)},
		}})
	}))
	defer srv.Close()
	opts := newEdgesOptions()
	opts.newClient = func() (rest.Interface, string, error) {
		client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
		if err != nil {
			return nil, "", err
		}
		return client.CoreV1().RESTClient(), "shop", nil
	}
	cmd := newEdgesCmdWith(opts)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"deploy"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if query != "namespace=shop&resource=deployment&window=1m0s" {
		t.Errorf("query %q", query)
	}
	golden.Assert(t, "edges.table", out.Bytes())

	for _, args := range [][]string{{"ns"}, {"deploy", "-o", "wide"}, {"deploy", "-n", "a", "-A"}} {
		cmd := newEdgesCmdWith(newEdgesOptions())
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.ExecuteContext(context.Background()); err == nil {
			t.Errorf("mesh edges %s: no error", strings.Join(args, " "))
		}
	}
}
