package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/controller/stats"
)

//go:embed assets
var assets embed.FS

// workloadKinds are the resource types a namespace page shows, in order.
var workloadKinds = []string{stats.ResourceDeployment, stats.ResourceStatefulSet, stats.ResourceDaemonSet, stats.ResourceJob, stats.ResourcePod}

// Options configure a Server.
type Options struct {
	// Stats answers the stat queries. Required.
	Stats StatSource
	// Edges answers the edge queries of the topology and workload pages; when nil, Stats
	// is used if it is an EdgeSource too. Tap streams the tap page; likewise.
	Edges EdgeSource
	Tap   TapSource
	// Routes finds a workload's routes; Checks runs mesh check's checks. Without them,
	// their sections say they are not available.
	Routes RouteSource
	Checks CheckSource
	// AllowedHosts are the host names (without port) the Host header may carry, besides
	// localhost, 127.0.0.1 and ::1; "*" allows any (only behind something that checks it).
	AllowedHosts []string
	// Window is the stats window the pages show (stats.DefaultWindow when zero).
	Window time.Duration
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
}

// Server serves the dashboard.
type Server struct {
	opts  Options
	pages *template.Template
	mux   *http.ServeMux
}

// New checks opts and builds the server.
func New(opts Options) (*Server, error) {
	if opts.Stats == nil {
		return nil, fmt.Errorf("dashboard: no stats source")
	}
	if opts.Window == 0 {
		opts.Window = stats.DefaultWindow
	}
	if opts.Window < stats.MinWindow || opts.Window > stats.MaxWindow {
		return nil, fmt.Errorf("dashboard: window %s: give a duration from %s to %s", opts.Window, stats.MinWindow, stats.MaxWindow)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if e, ok := opts.Stats.(EdgeSource); ok && opts.Edges == nil {
		opts.Edges = e
	}
	if t, ok := opts.Stats.(TapSource); ok && opts.Tap == nil {
		opts.Tap = t
	}
	pages, err := template.New("").Funcs(template.FuncMap{
		"pct":     formatPercent,
		"rps":     formatRPS,
		"ms":      formatMs,
		"num":     formatNumber,
		"kindURL": func(k string) string { return url.PathEscape(k) },
		"svgNum":  svgNum,
	}).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	s := &Server{opts: opts, pages: pages, mux: http.NewServeMux()}
	static, _ := fs.Sub(assets, "assets/static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /api/stat", s.apiStat)
	s.mux.HandleFunc("GET /{$}", s.namespacesPage)
	s.mux.HandleFunc("GET /namespaces/{ns}", s.namespacePage)
	s.mux.HandleFunc("GET /namespaces/{ns}/{kind}/{name}", s.workloadPage)
	s.mux.HandleFunc("GET /namespaces/{ns}/topology", s.topologyPage)
	s.mux.HandleFunc("GET /check", s.checkPage)
	s.mux.HandleFunc("GET /tap", s.tapPage)
	s.mux.HandleFunc("GET /api/tap", s.apiTap)
	return s, nil
}

// ServeHTTP checks the method and Host header, sets the security headers and serves.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.hostAllowed(r.Host) {
		http.Error(w, "this host name is not allowed: reach the dashboard through localhost (mesh dashboard) or add it to --allowed-hosts", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(strings.ToLower(host), "[]")
	switch host {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return slices.Contains(s.opts.AllowedHosts, "*") || slices.Contains(s.opts.AllowedHosts, host)
}

// apiStat passes a validated stat query through.
func (s *Server) apiStat(w http.ResponseWriter, r *http.Request) {
	if _, err := stats.ParseQuery(r); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	q := url.Values{}
	for _, k := range []string{"resource", "namespace", "name", "window"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	resp, err := s.opts.Stats.Stat(r.Context(), q)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// table is one live table of a page: the rows and the query that refreshes them.
type table struct {
	Title string
	Kind  string
	Query string
	Rows  []stats.Row
	Error string
}

type pageData struct {
	Title     string
	Namespace string
	Kind      string
	Name      string
	Window    string
	Tables    []table
	// Section is the navigation entry of the page: workloads, topology, check or tap.
	Section string
	// Error is a problem of the page's main section.
	Error string

	Topology *topology
	// Edges are the inbound edges (workload page) or all of them (topology page);
	// OutEdges the workload's outbound ones.
	Edges    []edgeView
	OutEdges []edgeView
	OutError string

	Routes      *routesData
	RoutesError string

	Checks       []checkView
	CheckCounts  [4]int // success, warning, error, skipped
	ChecksNotRun int    // after a fatal failure

	TapForm  tapForm
	TapQuery string // the /api/tap query the script streams; empty: none yet
}

func (s *Server) query(ctx context.Context, resource, namespace, name string) table {
	q := url.Values{"resource": {resource}, "window": {s.opts.Window.String()}}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if name != "" {
		q.Set("name", name)
	}
	t := table{Kind: resource, Query: q.Encode()}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := s.opts.Stats.Stat(ctx, q)
	if err != nil {
		t.Error = err.Error()
		return t
	}
	t.Rows = resp.Rows
	return t
}

func (s *Server) namespacesPage(w http.ResponseWriter, r *http.Request) {
	t := s.query(r.Context(), stats.ResourceNamespace, "", "")
	t.Title = "Namespaces"
	s.render(w, "namespaces.html", pageData{Title: "Namespaces", Window: s.opts.Window.String(), Tables: []table{t}})
}

func (s *Server) namespacePage(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	data := pageData{Title: "Namespace " + ns, Namespace: ns, Section: "workloads", Window: s.opts.Window.String()}
	for _, kind := range workloadKinds {
		t := s.query(r.Context(), kind, ns, "")
		if len(t.Rows) == 0 && t.Error == "" {
			continue
		}
		t.Title = kindTitle(kind)
		data.Tables = append(data.Tables, t)
	}
	s.render(w, "namespace.html", data)
}

func (s *Server) workloadPage(w http.ResponseWriter, r *http.Request) {
	ns, kind, name := r.PathValue("ns"), r.PathValue("kind"), r.PathValue("name")
	resource, ok := stats.Resources[kind]
	if !ok || resource == stats.ResourceNamespace {
		http.Error(w, fmt.Sprintf("unknown kind %q: use deployment, statefulset, daemonset, job or pod", kind), http.StatusNotFound)
		return
	}
	t := s.query(r.Context(), resource, ns, name)
	t.Title = "Golden metrics"
	data := pageData{Title: resource + " " + ns + "/" + name, Namespace: ns, Kind: resource, Name: name, Section: "workloads", Window: s.opts.Window.String(), Tables: []table{t}}
	s.workloadExtras(r.Context(), &data)
	s.render(w, "workload.html", data)
}

func (s *Server) render(w http.ResponseWriter, page string, data pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.pages.ExecuteTemplate(w, page, data); err != nil {
		s.opts.Logger.Error("rendering a page failed", "page", page, "err", err)
	}
}

func kindTitle(kind string) string {
	switch kind {
	case stats.ResourceDeployment:
		return "Deployments"
	case stats.ResourceStatefulSet:
		return "StatefulSets"
	case stats.ResourceDaemonSet:
		return "DaemonSets"
	case stats.ResourceJob:
		return "Jobs"
	case stats.ResourcePod:
		return "Pods"
	}
	return "Namespaces"
}

func formatPercent(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100**v)
}

func formatRPS(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1frps", *v)
}

func formatMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0fms", *v)
}

func formatNumber(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", *v)
}
