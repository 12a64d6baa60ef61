//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jaeger is a real Jaeger (all-in-one, built from its Go module by hack/build-jaeger.sh)
// running on this machine: the proxies' agent address is the node's IP and 6831/udp.
type jaeger struct {
	queryURL  string
	agentAddr string
}

// startJaeger runs Jaeger listening on every address, stopped by PID when the test ends.
func startJaeger(t *testing.T, c *cluster, root string) *jaeger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "hack/build-jaeger.sh")
	build.Dir = root
	out, err := build.Output()
	if err != nil {
		t.Fatalf("hack/build-jaeger.sh: %v", err)
	}
	bin := strings.TrimSpace(string(out))
	logFile, err := os.Create(filepath.Join(t.TempDir(), "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "JAEGER_LISTEN_HOST=0.0.0.0")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})
	j := &jaeger{queryURL: "http://127.0.0.1:16686"}
	client := &http.Client{Timeout: 5 * time.Second}
	eventually(t, time.Minute, "Jaeger's query API to answer", func() (bool, string) {
		resp, err := client.Get(j.queryURL + "/api/services")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	nodeIP := strings.TrimSpace(c.must(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`))
	if nodeIP == "" {
		t.Fatal("the node has no InternalIP")
	}
	j.agentAddr = nodeIP + ":6831"
	return j
}

// jaegerTrace is a trace as Jaeger's query API returns it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID     string `json:"spanID"`
		ProcessID  string `json:"processID"`
		References []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// tracingCheck: a request of the demo's traffic crosses traffic -> order-service ->
// user-service; Jaeger shows it as one trace holding the spans of the three services'
// proxies, every span but the root a child of another span of the trace.
func tracingCheck(t *testing.T, j *jaeger) {
	client := &http.Client{Timeout: 10 * time.Second}
	var last string
	eventually(t, 2*time.Minute, "a trace across traffic, order-service and user-service in Jaeger", func() (bool, string) {
		resp, err := client.Get(j.queryURL + "/api/traces?service=user-service&limit=50&lookback=10m")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Data []jaegerTrace `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return false, err.Error()
		}
		for _, tr := range body.Data {
			services := map[string]bool{}
			ids := map[string]bool{}
			for _, s := range tr.Spans {
				ids[s.SpanID] = true
				services[tr.Processes[s.ProcessID].ServiceName] = true
			}
			roots, dangling := 0, 0
			for _, s := range tr.Spans {
				parent := ""
				for _, r := range s.References {
					if r.RefType == "CHILD_OF" {
						parent = r.SpanID
					}
				}
				switch {
				case parent == "":
					roots++
				case !ids[parent]:
					dangling++
				}
			}
			last = fmt.Sprintf("trace %s: %d spans, services %v, %d roots, %d dangling", tr.TraceID, len(tr.Spans), services, roots, dangling)
			if services["traffic"] && services["order-service"] && services["user-service"] && len(tr.Spans) >= 4 && roots == 1 && dangling == 0 {
				return true, last
			}
		}
		return false, fmt.Sprintf("%d traces; last: %s", len(body.Data), last)
	})
}
