package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/internal/tap"
)

// Bounds of the pages' calls.
const (
	edgesTimeout  = 15 * time.Second
	routesTimeout = 15 * time.Second
	checksTimeout = 90 * time.Second
	// tapGrace is how long a tap may run past its duration (the controller's own bound).
	tapGrace = 15 * time.Second
)

// edgeView is one edge as a page shows it.
type edgeView struct {
	Src, Dst, Namespace, ClientID string
	Secured                       bool
	RPS, Success                  string
}

func viewEdges(edges []stats.Edge, namespace string, keep func(src string, e stats.Edge) bool) []edgeView {
	var out []edgeView
	for _, e := range edges {
		for _, src := range sourceNames(e, namespace) {
			if keep != nil && !keep(src, e) {
				continue
			}
			out = append(out, edgeView{Src: src, Dst: e.Dst, Namespace: e.DstNamespace, ClientID: e.ClientID, Secured: e.Secured,
				RPS: formatRPS(e.RequestsPerSecond), Success: formatPercent(e.SuccessRate)})
		}
	}
	return out
}

// edges asks the edge source; an error is returned as text for the page.
func (s *Server) edges(ctx context.Context, resource, namespace, name string) ([]stats.Edge, string) {
	if s.opts.Edges == nil {
		return nil, "edges are not available: this dashboard has no edge source"
	}
	q := url.Values{"resource": {resource}, "window": {s.opts.Window.String()}}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if name != "" {
		q.Set("name", name)
	}
	ctx, cancel := context.WithTimeout(ctx, edgesTimeout)
	defer cancel()
	resp, err := s.opts.Edges.Edges(ctx, q)
	if err != nil {
		return nil, err.Error()
	}
	return resp.Edges, ""
}

// topologyPage draws the namespace's deployments and who calls whom, as inline SVG.
func (s *Server) topologyPage(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	data := pageData{Title: "Topology of " + ns, Namespace: ns, Section: "topology", Window: s.opts.Window.String()}
	edges, errText := s.edges(r.Context(), stats.ResourceDeployment, ns, "")
	data.Error = errText
	topo := layoutTopology(edges, ns)
	data.Topology = &topo
	data.Edges = viewEdges(edges, ns, nil)
	s.render(w, "topology.html", data)
}

// workloadExtras adds the workload page's edges and routes.
func (s *Server) workloadExtras(ctx context.Context, data *pageData) {
	in, errText := s.edges(ctx, data.Kind, data.Namespace, data.Name)
	data.Edges = viewEdges(in, data.Namespace, nil)
	data.Error = errText
	if errText == "" {
		// Outbound: the edges of the whole namespace whose source is this workload.
		all, errText := s.edges(ctx, data.Kind, "", "")
		data.OutError = errText
		data.OutEdges = viewEdges(all, data.Namespace, func(src string, e stats.Edge) bool {
			return src == data.Name && e.SrcNamespace == data.Namespace
		})
	}
	if s.opts.Routes == nil {
		data.RoutesError = "routes are not available: this dashboard has no access to the route resources"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, routesTimeout)
	defer cancel()
	routes, err := s.opts.Routes.Routes(ctx, data.Namespace, data.Kind, data.Name)
	if err != nil {
		data.RoutesError = err.Error()
		return
	}
	data.Routes = &routesData{Services: routes.Services, Tables: viewTables(routes.Tables), Unsupported: routes.Unsupported, Notes: routes.Notes}
}

// routesData is the workload page's routes section.
type routesData struct {
	Services    []string
	Tables      []tableView
	Unsupported []string
	Notes       []string
}

// checkPage runs the checks and shows their results.
func (s *Server) checkPage(w http.ResponseWriter, r *http.Request) {
	data := pageData{Title: "Checks", Section: "check", Window: s.opts.Window.String()}
	if s.opts.Checks == nil {
		data.Error = "checks are not available: this dashboard has no access to the cluster's API"
		s.render(w, "check.html", data)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), checksTimeout)
	defer cancel()
	results, err := s.opts.Checks.Check(ctx)
	if err != nil {
		data.Error = err.Error()
	}
	data.Checks = viewChecks(results)
	data.ChecksNotRun = results.Skipped
	for _, c := range data.Checks {
		data.CheckCounts[statusIndex(c.Status)]++
	}
	s.render(w, "check.html", data)
}

// statusIndex orders the check statuses for the summary: success, warning, error, skipped.
func statusIndex(status string) int {
	switch status {
	case "success":
		return 0
	case "warning":
		return 1
	case "error":
		return 2
	}
	return 3
}

// tapQuery reads and checks a tap request of the page or its API: the tap contract's
// parameters, a namespace and a resource (TYPE or TYPE/NAME).
func tapQuery(v url.Values) (url.Values, tap.Query, error) {
	q, err := tap.ParseQuery(v)
	if err != nil {
		return nil, q, err
	}
	ns := v.Get("namespace")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, q, fmt.Errorf("namespace %q: give a namespace name", ns)
	}
	resource := v.Get("resource")
	kind, name, _ := strings.Cut(resource, "/")
	if k, ok := stats.Resources[kind]; !ok || k == stats.ResourceNamespace {
		return nil, q, fmt.Errorf("resource %q: write TYPE or TYPE/NAME, TYPE one of deployment, statefulset, daemonset, job, pod", resource)
	}
	out := q.Values()
	out.Set("namespace", ns)
	out.Set("resource", stats.Resources[kind]+strings.TrimSuffix("/"+name, "/"))
	return out, q, nil
}

// tapPage is the live tap view: a form, and a table the script fills from /api/tap.
func (s *Server) tapPage(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	data := pageData{Title: "Live tap", Section: "tap", Namespace: v.Get("namespace"), Window: s.opts.Window.String()}
	data.TapForm = tapForm{Namespace: v.Get("namespace"), Resource: v.Get("resource"), Max: v.Get(tap.ParamMax), Duration: v.Get(tap.ParamDuration), PathPrefix: v.Get(tap.ParamPathPrefix), Method: v.Get(tap.ParamMethod)}
	if data.TapForm.Max == "" {
		data.TapForm.Max = "100"
	}
	if data.TapForm.Duration == "" {
		data.TapForm.Duration = "30s"
	}
	if v.Get("resource") != "" {
		q, _, err := tapQuery(v)
		if err != nil {
			data.Error = err.Error()
		} else {
			data.TapQuery = q.Encode()
		}
	}
	if s.opts.Tap == nil {
		data.Error = "the live tap is not available: this dashboard has no tap source"
		data.TapQuery = ""
	}
	s.render(w, "tap.html", data)
}

// tapForm is the tap page's form, as the user filled it.
type tapForm struct {
	Namespace, Resource, Max, Duration, PathPrefix, Method string
}

// apiTap streams a tap: the source's lines, each checked to be JSON, flushed as they come.
func (s *Server) apiTap(w http.ResponseWriter, r *http.Request) {
	if s.opts.Tap == nil {
		writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "this dashboard has no tap source"})
		return
	}
	fwd, q, err := tapQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), q.Duration+tapGrace)
	defer cancel()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(q.Duration + tapGrace + 5*time.Second))
	stream, err := s.opts.Tap.Tap(ctx, fwd)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	defer func() { _ = stream.Close() }()
	w.Header().Set("Content-Type", tap.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	scanner := bufio.NewScanner(stream)
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scanner.Scan() {
		line := scanner.Bytes()
		if len(line) == 0 || !json.Valid(line) {
			continue
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return // the page went away
		}
		_ = rc.Flush()
	}
	if err := scanner.Err(); err != nil && ctx.Err() == nil {
		b, _ := json.Marshal(tap.StreamError{StreamError: "the tap stream broke: " + err.Error()})
		_, _ = w.Write(append(b, '\n'))
	}
}
