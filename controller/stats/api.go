package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Limits and default of the window query parameter.
const (
	DefaultWindow = time.Minute
	MinWindow     = 10 * time.Second
	MaxWindow     = DefaultRetention
	// APIPath is the stat endpoint's path.
	APIPath = "/api/v1/stat"
)

// Response is the body of GET /api/v1/stat.
type Response struct {
	Resource string `json:"resource"`
	Window   string `json:"window"`
	Rows     []Row  `json:"rows"`
}

// Row is one resource's stats over the window. Pointers are null when nothing was measured:
// no pod of it is meshed or scraped twice yet (rates), or it answered no request (success,
// latencies).
type Row struct {
	Namespace string `json:"namespace,omitempty"`
	Resource  string `json:"resource"`
	Name      string `json:"name"`
	// MeshedPods of TotalPods (running or pending) have the proxy.
	MeshedPods int `json:"meshedPods"`
	TotalPods  int `json:"totalPods"`
	// SuccessRate is the fraction (0 to 1) of inbound responses classified success.
	SuccessRate *float64 `json:"successRate"`
	// RequestsPerSecond is the rate of inbound responses.
	RequestsPerSecond *float64 `json:"requestsPerSecond"`
	// LatencyP50Ms, P95 and P99 are quantiles of the inbound response latency, in ms.
	LatencyP50Ms *float64 `json:"latencyP50Ms"`
	LatencyP95Ms *float64 `json:"latencyP95Ms"`
	LatencyP99Ms *float64 `json:"latencyP99Ms"`
	// TCPConnections are the open inbound connections at the last scrape.
	TCPConnections *float64 `json:"tcpConnections"`
	// ReadBytesPerSecond and WriteBytesPerSecond are inbound TCP byte rates.
	ReadBytesPerSecond  *float64 `json:"readBytesPerSecond"`
	WriteBytesPerSecond *float64 `json:"writeBytesPerSecond"`
}

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// fill sets the row's measurements from the merged window of its meshed pods.
func (r *Row) fill(w windowStats) {
	if !w.scraped {
		return
	}
	r.RequestsPerSecond = ptr(w.rps)
	if !w.sliced {
		r.TCPConnections = ptr(w.tcpOpen)
		r.ReadBytesPerSecond = ptr(w.readRate)
		r.WriteBytesPerSecond = ptr(w.writeRate)
	}
	if total := w.success + w.failure; total > 0 {
		r.SuccessRate = ptr(w.success / total)
	}
	r.LatencyP50Ms = ptr(histogramQuantile(0.5, w.buckets))
	r.LatencyP95Ms = ptr(histogramQuantile(0.95, w.buckets))
	r.LatencyP99Ms = ptr(histogramQuantile(0.99, w.buckets))
}

func sortRows(rows []Row) {
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Namespace != rows[j].Namespace {
			return rows[i].Namespace < rows[j].Namespace
		}
		return rows[i].Name < rows[j].Name
	})
}

// ParseQuery reads and checks the query parameters of GET /api/v1/stat.
func ParseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Namespace: v.Get("namespace"), Name: v.Get("name"), Window: DefaultWindow}
	resource, ok := Resources[v.Get("resource")]
	if !ok {
		return q, fmt.Errorf("resource %q: give deployment, statefulset, daemonset, job, pod or namespace", v.Get("resource"))
	}
	q.Resource = resource
	for _, side := range []struct {
		param string
		ref   **Ref
	}{{"from", &q.From}, {"to", &q.To}} {
		spec := v.Get(side.param)
		if spec == "" {
			continue
		}
		kind, name, _ := strings.Cut(spec, "/")
		resource, ok := Resources[kind]
		if !ok || resource == ResourceNamespace {
			return q, fmt.Errorf("%s %q: write TYPE or TYPE/NAME, TYPE one of deployment, statefulset, daemonset, job, pod", side.param, spec)
		}
		ns := v.Get(side.param + "_namespace")
		if ns == "" {
			ns = q.Namespace
		}
		*side.ref = &Ref{Resource: resource, Namespace: ns, Name: name}
	}
	if q.From != nil && q.To != nil {
		return q, errors.New("give from or to, not both")
	}
	if w := v.Get("window"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < MinWindow || d > MaxWindow {
			return q, fmt.Errorf("window %q: give a duration from %s to %s", w, MinWindow, MaxWindow)
		}
		q.Window = d
	}
	return q, nil
}

// Handler serves the stats API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIPath, func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		rows, err := s.StatContext(r.Context(), q)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, Response{Resource: q.Resource, Window: q.Window.String(), Rows: rows})
	})
	mux.HandleFunc("GET "+EdgesPath, func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r)
		if err == nil && (q.From != nil || q.To != nil) {
			err = errors.New("edges take no from or to")
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		edges, err := s.EdgesContext(r.Context(), q)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, EdgesResponse{Resource: q.Resource, Window: q.Window.String(), Edges: edges})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve serves the API on lis until ctx ends.
func (s *Service) Serve(ctx context.Context, lis net.Listener) error {
	server := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(lis) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		_ = server.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
