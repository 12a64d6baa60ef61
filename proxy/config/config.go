// Package config reads the proxy's configuration from MESH_PROXY_* environment variables
// (proxy/README.md lists them). Every variable has a default; an invalid value is an error
// that names the variable and says what is expected, and the proxy refuses to start.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/proxy/admin"
	"github.com/lightmesh/lightmesh/proxy/dataplane"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/h1"
	proxyidentity "github.com/lightmesh/lightmesh/proxy/identity"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/tracing"
)

// Prefix starts the name of every variable.
const Prefix = "MESH_PROXY_"

// DefaultIdentityDir is where the identity files are mounted.
const DefaultIdentityDir = "/var/run/lightmesh/identity"

// Config is the proxy's validated configuration.
type Config struct {
	InboundAddr, OutboundAddr, AdminAddr string
	IdentityDisabled                     bool
	IdentityDir                          string
	IdentityReloadInterval               time.Duration
	TrustDomain                          string
	OpaquePorts                          []uint16
	DetectTimeout, ConnectTimeout        time.Duration
	ShutdownGrace                        time.Duration
	PeerInboundPort                      uint16
	MaxHeaderBytes, MaxHeaderCount       int
	MaxInFlightRequests                  int
	ReadHeaderTimeout, IdleTimeout       time.Duration
	BodyReadTimeout                      time.Duration
	// GatewayListeners (INGRESS_MODE) maps Gateway server ports to listen addresses; nil
	// when the proxy is not a gateway.
	GatewayListeners map[uint32]string
	// Tracing, when set, makes a span per request (TRACING_AGENT_ADDR set).
	Tracing      *tracing.Config
	LogLevel     slog.Level
	LogFormat    string
	PodIP        netip.Addr
	Pprof        bool
	Destinations *discovery.Static

	// IdentityAddr is the controller's identity service; when set, the proxy gets its
	// certificate from it (for Identity) instead of reading IdentityDir.
	IdentityAddr, IdentityServerName, IdentityTokenFile string
	// TrustAnchors are the mesh's trust anchors (from TRUST_ANCHORS), with IdentityAddr.
	TrustAnchors []*x509.Certificate
	// Identity is the pod's SPIFFE ID, from TRUST_DOMAIN, POD_NAMESPACE and SERVICE_ACCOUNT.
	Identity identity.SpiffeID
	// PodName and PodNamespace name the pod: in logs, and, with DestinationAddr, the pod
	// whose inbound policy (mTLS mode, authorization) the proxy streams.
	PodName, PodNamespace string
	// TapAddr is the tap listener (mTLS, the controller only); "" when tapping is off.
	// TapIdentity is the one identity that may tap: TAP_IDENTITY, else the controller's
	// ServiceAccount in the control plane's namespace (the one of IDENTITY_ADDR's host).
	TapAddr     string
	TapIdentity identity.SpiffeID
	// SchedulerPoll keeps the Go runtime's monitor thread polling (see proxy/cmd/runtime.go).
	SchedulerPoll bool
	// DestinationAddr is the controller's destination service; when set, the proxy resolves
	// outbound traffic through it (after STATIC_DESTINATIONS), over mTLS with its own
	// certificate, verifying DestinationServerName.
	DestinationAddr, DestinationServerName string
}

// Variable documents one setting.
type Variable struct {
	Name, Default, Help string
}

// Variables lists every variable with its default, as the README documents them.
var Variables = []Variable{
	{"INBOUND_ADDR", dataplane.DefaultInboundAddr, "inbound listener (ip:port)"},
	{"OUTBOUND_ADDR", dataplane.DefaultOutboundAddr, "outbound listener (ip:port); keep it on loopback"},
	{"ADMIN_ADDR", admin.DefaultAddr, "admin listener: /live, /ready, /metrics, /shutdown"},
	{"IDENTITY_DISABLED", "false", "true: no mTLS, plaintext everywhere (tests, standalone); /ready then only needs the listeners"},
	{"IDENTITY_DIR", DefaultIdentityDir, "folder with tls.crt (certificate and chain), tls.key and ca.crt (trust anchors), PEM; reloaded on change"},
	{"IDENTITY_RELOAD_INTERVAL", meshtls.DefaultReloadInterval.String(), "how often the identity files are checked for changes"},
	{"TRUST_DOMAIN", identity.DefaultTrustDomain, "the only trust domain peers may belong to"},
	{"OPAQUE_PORTS", joinPorts(dataplane.DefaultOpaquePorts), "ports that skip protocol detection (server-speaks-first), comma-separated, ranges like 8000-8010; none for no port"},
	{"DETECT_TIMEOUT", dataplane.DefaultDetectTimeout.String(), "how long detection waits for the client's first bytes before treating it as opaque"},
	{"CONNECT_TIMEOUT", dataplane.DefaultConnectTimeout.String(), "bound on connecting upstream, TLS handshake included"},
	{"SHUTDOWN_GRACE", dataplane.DefaultShutdownGrace.String(), "how long in-flight requests may finish after SIGTERM"},
	{"PEER_INBOUND_PORT", strconv.Itoa(dataplane.DefaultPeerInboundPort), "other proxies' inbound port, for opaque TCP between proxies"},
	{"MAX_HEADER_BYTES", strconv.Itoa(h1.DefaultMaxHeaderBytes), "largest request head (431 above)"},
	{"MAX_HEADER_COUNT", strconv.Itoa(h1.DefaultMaxHeaderCount), "most request header fields (431 above)"},
	{"MAX_IN_FLIGHT_REQUESTS", strconv.Itoa(dataplane.DefaultMaxInFlightRequests), "most HTTP requests (and HTTP/2 streams) served at once, all directions together; the excess is answered 503 overloaded at once instead of queued"},
	{"READ_HEADER_TIMEOUT", h1.DefaultReadHeaderTimeout.String(), "time to read a request head"},
	{"IDLE_TIMEOUT", h1.DefaultIdleTimeout.String(), "idle time before a client connection is closed"},
	{"BODY_READ_TIMEOUT", h1.DefaultBodyReadTimeout.String(), "longest wait for more request body bytes from a client (408, or the request fails, after it)"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "json", "json, or plain (Linkerd's name; text is the same)"},
	{"POD_IP", "", "the pod's IP: the admin server also answers requests with it as Host"},
	{"ADMIN_PPROF", "false", "true serves /debug/pprof/ on the admin port"},
	{"SCHEDULER_POLL", "true", "true keeps the Go runtime's monitor thread polling (every 10 ms when idle) instead of sleeping until the next system call: about a third less CPU per request under load, about 100 wake-ups a second when idle; false for mostly idle workloads"},
	{"IDENTITY_ADDR", "", "the controller's identity service (host:port); set: get the certificate from it, unset: read IDENTITY_DIR"},
	{"IDENTITY_SERVER_NAME", "", "DNS name the identity service's certificate must have (default: the host of IDENTITY_ADDR)"},
	{"IDENTITY_TOKEN_FILE", proxyidentity.DefaultTokenFile, "the projected ServiceAccount token (audience identity.lightmesh.io) sent to the identity service"},
	{"TRUST_ANCHORS", "", "the mesh's trust anchors, PEM; required with IDENTITY_ADDR"},
	{"POD_NAMESPACE", "", "the pod's namespace (downward API); with SERVICE_ACCOUNT it names the proxy's identity; required with IDENTITY_ADDR; with POD_NAME and DESTINATION_ADDR, the pod whose inbound policy is streamed"},
	{"SERVICE_ACCOUNT", "", "the pod's ServiceAccount (downward API); required with IDENTITY_ADDR"},
	{"POD_NAME", "", "the pod's name (downward API), for logs; with POD_NAMESPACE and DESTINATION_ADDR, the proxy streams its inbound policy (PeerAuthentication, AuthorizationPolicy)"},
	{"INGRESS_MODE", "false", "true runs the proxy as an ingress gateway too: it serves GATEWAY_LISTENERS with the Istio Gateways that select its pod (needs DESTINATION_ADDR, POD_NAMESPACE and POD_NAME)"},
	{"GATEWAY_LISTENERS", "80=0.0.0.0:8080", "with INGRESS_MODE: Gateway server port=listen address, comma-separated (the gateway Service maps each port to its address)"},
	{"DESTINATION_ADDR", "", "the controller's destination service (host:port); set: outbound traffic is resolved through it and routing and authorization policy come from it (mTLS with the proxy's certificate), unset: STATIC_DESTINATIONS or passthrough, and no policy"},
	{"DESTINATION_SERVER_NAME", "", "DNS name the destination service's certificate must have (default: the host of DESTINATION_ADDR)"},
	{"TRACING_AGENT_ADDR", "", "the Jaeger agent (host:6831, UDP); set: the proxy makes a span per request, propagating uber-trace-id, B3 and W3C traceparent"},
	{"TRACING_SAMPLER_TYPE", tracing.SamplerConst, "Jaeger sampler: const, probabilistic or ratelimiting"},
	{"TRACING_SAMPLER_PARAM", "1", "the sampler's param: 1 or 0 (const), a probability (probabilistic), traces per second (ratelimiting)"},
	{"TRACING_LOG_SPANS", "false", "true logs every reported span"},
	{"TRACING_SERVICE_NAME", "", "the spans' service name (mesh inject: the pod's app label); default: the ServiceAccount, then the pod name"},
	{"TAP_ADDR", "0.0.0.0:4190", "tap listener (ip:port), mTLS, for the controller's identity only (mesh tap, mesh top); none turns tapping off"},
	{"TAP_IDENTITY", "", "the SPIFFE ID allowed to tap (default: spiffe://<TRUST_DOMAIN>/ns/<control-plane namespace>/sa/lightmesh-controller, the namespace read from IDENTITY_ADDR's host, else lightmesh)"},
	{"STATIC_DESTINATIONS", "", "fixed discovery table: KEY=IP:PORT[@SPIFFE-ID][|...], comma-separated (KEY is ip:port or host:port); empty: passthrough"},
}

func joinPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// Load reads the configuration with lookup (os.LookupEnv in production).
func Load(lookup func(string) (string, bool)) (*Config, error) {
	l := loader{lookup: lookup}
	c := &Config{
		InboundAddr:            l.addr("INBOUND_ADDR"),
		OutboundAddr:           l.addr("OUTBOUND_ADDR"),
		AdminAddr:              l.addr("ADMIN_ADDR"),
		IdentityDisabled:       l.bool("IDENTITY_DISABLED"),
		IdentityDir:            l.string("IDENTITY_DIR"),
		IdentityReloadInterval: l.duration("IDENTITY_RELOAD_INTERVAL"),
		TrustDomain:            l.string("TRUST_DOMAIN"),
		OpaquePorts:            l.ports("OPAQUE_PORTS"),
		DetectTimeout:          l.duration("DETECT_TIMEOUT"),
		ConnectTimeout:         l.duration("CONNECT_TIMEOUT"),
		ShutdownGrace:          l.duration("SHUTDOWN_GRACE"),
		PeerInboundPort:        uint16(l.int("PEER_INBOUND_PORT", 1, 65535)),
		MaxHeaderBytes:         l.int("MAX_HEADER_BYTES", 1024, 1<<20),
		MaxHeaderCount:         l.int("MAX_HEADER_COUNT", 1, 10000),
		MaxInFlightRequests:    l.int("MAX_IN_FLIGHT_REQUESTS", 1, 1_000_000),
		ReadHeaderTimeout:      l.duration("READ_HEADER_TIMEOUT"),
		IdleTimeout:            l.duration("IDLE_TIMEOUT"),
		BodyReadTimeout:        l.duration("BODY_READ_TIMEOUT"),
		LogFormat:              l.oneOf("LOG_FORMAT", "json", "plain", "text"),
		Pprof:                  l.bool("ADMIN_PPROF"),
		SchedulerPoll:          l.bool("SCHEDULER_POLL"),
	}
	switch level := l.oneOf("LOG_LEVEL", "debug", "info", "warn", "error"); level {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	}
	if c.TrustDomain != "" {
		if err := identity.ValidateTrustDomain(c.TrustDomain); err != nil {
			l.fail("TRUST_DOMAIN", c.TrustDomain, err.Error())
		}
	}
	if v := l.string("POD_IP"); v != "" {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			l.fail("POD_IP", v, "write an IP address")
		}
		c.PodIP = ip
	}
	if v := l.string("STATIC_DESTINATIONS"); v != "" {
		table, err := discovery.ParseStatic(v)
		if err != nil {
			l.fail("STATIC_DESTINATIONS", v, err.Error())
		}
		c.Destinations = table
	}
	if l.bool("INGRESS_MODE") {
		c.GatewayListeners = map[uint32]string{}
		spec := l.string("GATEWAY_LISTENERS")
		for _, entry := range strings.Split(spec, ",") {
			port, addr, ok := strings.Cut(strings.TrimSpace(entry), "=")
			n, err := strconv.ParseUint(port, 10, 16)
			if _, _, aerr := net.SplitHostPort(addr); !ok || err != nil || n == 0 || aerr != nil {
				l.fail("GATEWAY_LISTENERS", spec, "write PORT=ADDRESS pairs, comma-separated, such as 80=0.0.0.0:8080")
				break
			}
			c.GatewayListeners[uint32(n)] = addr
		}
		if l.string("DESTINATION_ADDR") == "" || l.string("POD_NAMESPACE") == "" || l.string("POD_NAME") == "" {
			l.fail("INGRESS_MODE", "true", "a gateway learns its Gateways from the destination service: set DESTINATION_ADDR, POD_NAMESPACE and POD_NAME too (mesh inject does)")
		}
	}
	c.loadIdentity(&l)
	c.loadTracing(&l)
	c.loadTap(&l)
	if err := errors.Join(l.errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// loadIdentity reads where the proxy's certificate comes from: the identity service (with
// the trust anchors and the pod's identity, all required then) or the identity files.
func (c *Config) loadIdentity(l *loader) {
	c.PodName = l.string("POD_NAME")
	c.PodNamespace = l.string("POD_NAMESPACE")
	c.loadDestination(l)
	c.IdentityAddr = l.string("IDENTITY_ADDR")
	if c.IdentityAddr == "" || c.IdentityDisabled {
		return
	}
	host, _, err := net.SplitHostPort(c.IdentityAddr)
	if err != nil {
		l.fail("IDENTITY_ADDR", c.IdentityAddr, "write host:port, for example identity.lightmesh.svc.cluster.local:8080")
	}
	c.IdentityServerName = l.string("IDENTITY_SERVER_NAME")
	if c.IdentityServerName == "" {
		c.IdentityServerName = host
	}
	c.IdentityTokenFile = l.string("IDENTITY_TOKEN_FILE")
	pem := l.string("TRUST_ANCHORS")
	if pem == "" {
		l.fail("TRUST_ANCHORS", pem, "give the mesh's trust anchors (PEM) with IDENTITY_ADDR; mesh inject sets them")
	} else if c.TrustAnchors, err = identity.DecodeCertificatesPEM([]byte(pem)); err != nil {
		l.fail("TRUST_ANCHORS", "(PEM)", "write PEM certificates: "+err.Error())
	}
	ns, sa := l.string("POD_NAMESPACE"), l.string("SERVICE_ACCOUNT")
	if c.Identity, err = identity.NewSpiffeID(c.TrustDomain, ns, sa); err != nil {
		l.fail("POD_NAMESPACE/SERVICE_ACCOUNT", ns+"/"+sa, "give the pod's namespace and ServiceAccount (downward API): "+err.Error())
	}
}

// loadTracing reads the Jaeger settings: tracing is on when TRACING_AGENT_ADDR is set.
func (c *Config) loadTracing(l *loader) {
	agent := l.string("TRACING_AGENT_ADDR")
	if agent == "" {
		return
	}
	t := tracing.Config{
		LocalAgentHostPort: agent,
		SamplerType:        l.oneOf("TRACING_SAMPLER_TYPE", tracing.SamplerConst, tracing.SamplerProbabilistic, tracing.SamplerRateLimiting),
		LogSpans:           l.bool("TRACING_LOG_SPANS"),
		ServiceName:        l.string("TRACING_SERVICE_NAME"),
	}
	param := l.string("TRACING_SAMPLER_PARAM")
	v, err := strconv.ParseFloat(param, 64)
	if err != nil {
		l.fail("TRACING_SAMPLER_PARAM", param, "write a number, such as 1, 0.1 or 5")
	}
	t.SamplerParam = v
	if t.ServiceName == "" {
		t.ServiceName = l.string("SERVICE_ACCOUNT")
	}
	if t.ServiceName == "" {
		t.ServiceName = l.string("POD_NAME")
	}
	if t.ServiceName == "" {
		t.ServiceName = "mesh-proxy"
	}
	if err == nil {
		if verr := t.Validate(); verr != nil {
			l.fail("TRACING_*", agent, verr.Error())
		}
	}
	c.Tracing = &t
}

// ControllerServiceAccount is the control plane's ServiceAccount, whose identity may tap.
const ControllerServiceAccount = "lightmesh-controller"

// loadTap reads the tap listener and the identity allowed to use it.
func (c *Config) loadTap(l *loader) {
	addr := l.string("TAP_ADDR")
	if addr == "" || addr == "none" {
		return
	}
	if _, err := netip.ParseAddrPort(addr); err != nil {
		l.fail("TAP_ADDR", addr, "write ip:port, such as 0.0.0.0:4190, or none")
		return
	}
	c.TapAddr = addr
	if v := l.string("TAP_IDENTITY"); v != "" {
		id, err := identity.ParseSpiffeID(v)
		if err != nil {
			l.fail("TAP_IDENTITY", v, "write a SPIFFE ID such as spiffe://cluster.local/ns/lightmesh/sa/lightmesh-controller: "+err.Error())
		}
		c.TapIdentity = id
		return
	}
	// identity.NS.svc.cluster.local:8080 names the control plane's namespace.
	ns := "lightmesh"
	if host, _, err := net.SplitHostPort(l.string("IDENTITY_ADDR")); err == nil {
		if labels := strings.Split(host, "."); len(labels) >= 3 && labels[2] == "svc" && labels[1] != "" {
			ns = labels[1]
		}
	}
	if id, err := identity.NewSpiffeID(c.TrustDomain, ns, ControllerServiceAccount); err == nil {
		c.TapIdentity = id
	}
}

// loadDestination reads the destination service's address. The service needs the proxy's
// identity: with IDENTITY_DISABLED the proxy ignores it (and says so).
func (c *Config) loadDestination(l *loader) {
	c.DestinationAddr = l.string("DESTINATION_ADDR")
	if c.DestinationAddr == "" {
		return
	}
	host, _, err := net.SplitHostPort(c.DestinationAddr)
	if err != nil || host == "" {
		l.fail("DESTINATION_ADDR", c.DestinationAddr, "write host:port, for example destination.lightmesh.svc.cluster.local:8086")
		return
	}
	c.DestinationServerName = l.string("DESTINATION_SERVER_NAME")
	if c.DestinationServerName == "" {
		c.DestinationServerName = host
	}
}

type loader struct {
	lookup func(string) (string, bool)
	errs   []error
}

func (l *loader) fail(name, value, want string) {
	l.errs = append(l.errs, fmt.Errorf("invalid %s%s=%q: %s", Prefix, name, value, want))
}

func (l *loader) string(name string) string {
	if v, ok := l.lookup(Prefix + name); ok {
		return strings.TrimSpace(v)
	}
	i := slices.IndexFunc(Variables, func(v Variable) bool { return v.Name == name })
	return Variables[i].Default
}

func (l *loader) addr(name string) string {
	v := l.string(name)
	if _, err := netip.ParseAddrPort(v); err != nil {
		l.fail(name, v, "write ip:port, such as 0.0.0.0:4143")
	}
	return v
}

func (l *loader) bool(name string) bool {
	v := l.string(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.fail(name, v, "write true or false")
	}
	return b
}

func (l *loader) duration(name string) time.Duration {
	v := l.string(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		l.fail(name, v, "write a positive duration such as 10s or 500ms")
	}
	return d
}

func (l *loader) int(name string, lo, hi int) int {
	v := l.string(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		l.fail(name, v, fmt.Sprintf("write a whole number from %d to %d", lo, hi))
	}
	return n
}

func (l *loader) oneOf(name string, allowed ...string) string {
	v := strings.ToLower(l.string(name))
	if !slices.Contains(allowed, v) {
		l.fail(name, v, "write one of "+strings.Join(allowed, ", "))
	}
	return v
}

func (l *loader) ports(name string) []uint16 {
	v := l.string(name)
	ports := []uint16{}
	if v == "none" || v == "" {
		return ports
	}
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		first, last, isRange := strings.Cut(part, "-")
		lo, err1 := strconv.ParseUint(first, 10, 16)
		hi := lo
		var err2 error
		if isRange {
			hi, err2 = strconv.ParseUint(last, 10, 16)
		}
		if err1 != nil || err2 != nil || lo == 0 || hi < lo || hi-lo > 4096 {
			l.fail(name, v, "write ports from 1 to 65535 or ranges like 8000-8010, comma-separated, or none")
			return nil
		}
		for p := lo; p <= hi; p++ {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}
