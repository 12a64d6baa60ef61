// Package metrics holds the proxy's Prometheus metrics, with Linkerd's names and labels so
// existing dashboards work: request_total, response_total, response_latency_ms (Linkerd's
// buckets), tcp_open_total, tcp_close_total, tcp_open_connections, tcp_read_bytes_total and
// tcp_write_bytes_total; and tls_handshake_errors_total and tls_expired_connections_total for
// mesh TLS. Label children are resolved once per label set and cached, so the
// request path touches only atomic counters.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LatencyBucketsMs are Linkerd's response_latency_ms buckets.
var LatencyBucketsMs = []float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// Values of the tls label.
const (
	TLSTrue       = "true"        // mutual TLS between proxies
	TLSFalse      = "false"       // identity is disabled in this proxy
	TLSNoIdentity = "no_identity" // the peer has no mesh identity (not meshed, or passthrough)
)

// Labels identify a stream of traffic. Direction is "inbound" or "outbound"; Authority the
// request authority or the destination address; TLS one of the TLS constants; ClientID the
// verified client (inbound), ServerID the verified server (outbound).
type Labels struct {
	Direction string
	Authority string
	TLS       string
	ClientID  string
	ServerID  string
}

// TCPLabels identify one side of proxied connections: Peer is "src" (the accepted side) or
// "dst" (the side the proxy opened).
type TCPLabels struct {
	Labels
	Peer string
}

var (
	httpLabelNames = []string{"direction", "authority", "tls", "client_id", "server_id"}
	tcpLabelNames  = []string{"direction", "peer", "authority", "tls", "client_id", "server_id"}
)

// Registry is the proxy's metrics. It is safe for concurrent use.
type Registry struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	response *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	tcpOpen  *prometheus.CounterVec
	tcpClose *prometheus.CounterVec
	tcpConns *prometheus.GaugeVec
	tcpRead  *prometheus.CounterVec
	tcpWrite *prometheus.CounterVec
	// Mesh TLS: failed handshakes, and connections closed because a certificate of their
	// handshake expired, by direction.
	handshakeErrors *prometheus.CounterVec
	expiredConns    *prometheus.CounterVec
	// Requests answered 503 over the in-flight limit, by direction.
	shed *prometheus.CounterVec
	// Connections silent until protocol detection timed out, by direction.
	detectTimeouts *prometheus.CounterVec

	routes sync.Map // Labels -> *Route
	tcps   sync.Map // TCPLabels -> *TCP
}

// New returns a registry with the proxy's metrics and the Go and process collectors.
func New() *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "request_total", Help: "Total count of HTTP requests.",
		}, httpLabelNames),
		response: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "response_total", Help: "Total count of HTTP responses.",
		}, append(httpLabelNames[:len(httpLabelNames):len(httpLabelNames)], "status_code", "classification")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "response_latency_ms", Help: "Elapsed times between a request's headers being received and its response stream completing.",
			Buckets: LatencyBucketsMs,
		}, append(httpLabelNames[:len(httpLabelNames):len(httpLabelNames)], "status_code")),
		tcpOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_open_total", Help: "Total count of opened connections.",
		}, tcpLabelNames),
		tcpClose: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_close_total", Help: "Total count of closed connections.",
		}, tcpLabelNames),
		tcpConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcp_open_connections", Help: "Number of currently-open connections.",
		}, tcpLabelNames),
		tcpRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_read_bytes_total", Help: "Total count of bytes read from peers.",
		}, tcpLabelNames),
		tcpWrite: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcp_write_bytes_total", Help: "Total count of bytes written to peers.",
		}, tcpLabelNames),
		handshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tls_handshake_errors_total", Help: "Total count of failed mesh TLS handshakes with peer proxies.",
		}, []string{"direction"}),
		expiredConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tls_expired_connections_total", Help: "Total count of mesh connections closed because a certificate of their handshake expired.",
		}, []string{"direction"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "requests_shed_total", Help: "Total count of requests answered 503 because the proxy was serving its maximum of requests at once.",
		}, []string{"direction"}),
		detectTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "protocol_detect_timeouts_total", Help: "Total count of connections on which the client sent nothing before protocol detection timed out: carried as opaque TCP, or closed when their port declares HTTP.",
		}, []string{"direction"}),
	}
	r.reg.MustRegister(r.requests, r.response, r.latency, r.tcpOpen, r.tcpClose, r.tcpConns, r.tcpRead, r.tcpWrite,
		r.handshakeErrors, r.expiredConns, r.shed, r.detectTimeouts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, direction := range []string{"inbound", "outbound"} {
		// Zero from the start, so that a rate or an alert sees the series before the first event.
		r.handshakeErrors.WithLabelValues(direction)
		r.expiredConns.WithLabelValues(direction)
		r.shed.WithLabelValues(direction)
		r.detectTimeouts.WithLabelValues(direction)
	}
	return r
}

// HandshakeError counts a failed mesh TLS handshake in direction ("inbound" or "outbound").
func (r *Registry) HandshakeError(direction string) {
	r.handshakeErrors.WithLabelValues(direction).Inc()
}

// ExpiredConnection counts a mesh connection closed because a certificate of its handshake
// expired.
func (r *Registry) ExpiredConnection(direction string) {
	r.expiredConns.WithLabelValues(direction).Inc()
}

// Shed counts a request answered 503 over the in-flight limit.
func (r *Registry) Shed(direction string) {
	r.shed.WithLabelValues(direction).Inc()
}

// DetectTimeout counts a connection on which the client sent nothing within the protocol
// detection timeout.
func (r *Registry) DetectTimeout(direction string) {
	r.detectTimeouts.WithLabelValues(direction).Inc()
}

// Registerer is where other parts of the proxy (the identity client) register their metrics,
// so that /metrics serves them too.
func (r *Registry) Registerer() prometheus.Registerer { return r.reg }

// Gatherer returns the registry for scraping and tests.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the metrics in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Route returns the cached metrics of one label set.
func (r *Registry) Route(l Labels) *Route {
	if rt, ok := r.routes.Load(l); ok {
		return rt.(*Route)
	}
	rt := &Route{reg: r, labels: l, requests: r.requests.WithLabelValues(l.Direction, l.Authority, l.TLS, l.ClientID, l.ServerID)}
	actual, _ := r.routes.LoadOrStore(l, rt)
	return actual.(*Route)
}

// Route counts the requests and responses of one label set.
type Route struct {
	reg      *Registry
	labels   Labels
	requests prometheus.Counter
	statuses sync.Map // int -> *status
}

type status struct {
	success, failure prometheus.Counter
	latency          prometheus.Observer
}

// Request counts a request.
func (rt *Route) Request() { rt.requests.Inc() }

// Response counts a response with code, classified as a failure or not, that took elapsed
// from the request's headers to the end of the response stream.
func (rt *Route) Response(code int, failure bool, elapsed time.Duration) {
	s := rt.status(code)
	if failure {
		s.failure.Inc()
	} else {
		s.success.Inc()
	}
	s.latency.Observe(float64(elapsed) / float64(time.Millisecond))
}

func (rt *Route) status(code int) *status {
	if s, ok := rt.statuses.Load(code); ok {
		return s.(*status)
	}
	l, c := rt.labels, strconv.Itoa(code)
	s := &status{
		success: rt.reg.response.WithLabelValues(l.Direction, l.Authority, l.TLS, l.ClientID, l.ServerID, c, "success"),
		failure: rt.reg.response.WithLabelValues(l.Direction, l.Authority, l.TLS, l.ClientID, l.ServerID, c, "failure"),
		latency: rt.reg.latency.WithLabelValues(l.Direction, l.Authority, l.TLS, l.ClientID, l.ServerID, c),
	}
	actual, _ := rt.statuses.LoadOrStore(code, s)
	return actual.(*status)
}

// TCP returns the cached connection metrics of one label set.
func (r *Registry) TCP(l TCPLabels) *TCP {
	if t, ok := r.tcps.Load(l); ok {
		return t.(*TCP)
	}
	v := []string{l.Direction, l.Peer, l.Authority, l.TLS, l.ClientID, l.ServerID}
	t := &TCP{
		open:  r.tcpOpen.WithLabelValues(v...),
		close: r.tcpClose.WithLabelValues(v...),
		conns: r.tcpConns.WithLabelValues(v...),
		read:  r.tcpRead.WithLabelValues(v...),
		write: r.tcpWrite.WithLabelValues(v...),
	}
	actual, _ := r.tcps.LoadOrStore(l, t)
	return actual.(*TCP)
}

// TCP counts connections and their bytes.
type TCP struct {
	open, close, read, write prometheus.Counter
	conns                    prometheus.Gauge
}

// Open counts an opened connection.
func (t *TCP) Open() { t.open.Inc(); t.conns.Inc() }

// Close counts a closed connection.
func (t *TCP) Close() { t.close.Inc(); t.conns.Dec() }

// Read counts n bytes read from the peer.
func (t *TCP) Read(n int64) {
	if n > 0 {
		t.read.Add(float64(n))
	}
}

// Write counts n bytes written to the peer.
func (t *TCP) Write(n int64) {
	if n > 0 {
		t.write.Add(float64(n))
	}
}
