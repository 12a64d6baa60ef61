package dataplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/metrics"
)

// Reasons of the inbound policy's answers, sent in the Lightmesh-Proxy-Error header.
const (
	reasonInboundForbidden   = "forbidden"
	reasonInboundMTLS        = "mtls-required"
	reasonInboundInvalidPath = "invalid-path"
)

// rbacDeniedBody is the body of a request an AuthorizationPolicy denies, as Envoy's RBAC
// filter answers it.
const rbacDeniedBody = "RBAC: access denied"

// mtlsRequiredBody is the body of a plaintext request to a STRICT port.
const mtlsRequiredBody = "mtls-required: this port accepts only mutual TLS from meshed workloads (PeerAuthentication STRICT)\n"

// refusalLinger bounds how long a refused plaintext HTTP/1 connection is drained after its
// answer, so that the client reads the answer rather than a reset.
const refusalLinger = time.Second

// istioPrincipal returns a SPIFFE ID as an Istio principal (cluster.local/ns/NS/sa/SA).
func istioPrincipal(spiffeID string) string {
	return strings.TrimPrefix(spiffeID, "spiffe://")
}

// authorize enforces the workload's inbound policy (Options.Policy.Inbound, read for every
// request so that changes apply at once) on HTTP requests, as Istio's sidecar does:
//
//   - the path is normalised once (policy.NormalizePath); the normalised path is what the
//     policy matches and what the application receives; a path it rejects gets 400;
//   - a plaintext GET or HEAD for one of the pod's kubelet probes (exact port and path)
//     passes, whatever the policy;
//   - a plaintext request to a port whose PeerAuthentication mode is STRICT gets 403
//     mtls-required and its connection is closed;
//   - then policy.Authorize decides (DENY, then ALLOW; AUDIT matches are logged): a denied
//     request gets 403 "RBAC: access denied" and never reaches the application.
func (p *Proxy) authorize(next Handler) Handler {
	return HandlerFunc(func(ex *Exchange) {
		r, ci := ex.R, ex.Conn
		raw := r.URL.EscapedPath()
		path, pathErr := policy.NormalizePath(raw)
		if pathErr == nil && path != raw {
			setRequestPath(r.URL, path)
		}
		if p.opts.Policy == nil {
			if pathErr != nil {
				p.fail(ex, http.StatusBadRequest, reasonInboundInvalidPath, pathErr)
				return
			}
			next.ServeExchange(ex)
			return
		}
		inb := p.opts.Policy.Inbound()
		port := uint32(ci.origDst.Port())
		if !ci.meshed {
			if pathErr == nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && inb.IsProbe(port, path) {
				p.countAuthz(false, true, ci.origDst, "probe", nil)
				next.ServeExchange(ex)
				return
			}
			if inb != nil && policy.MTLSMode(inb.PeerAuthentication, port) == policy.ModeStrict {
				p.countAuthz(false, false, ci.origDst, reasonInboundMTLS, nil)
				if p.log.Enabled(r.Context(), slog.LevelDebug) {
					p.log.Debug("refused a plaintext request: the port is STRICT", "source", ci.remote.String(), "port", port, "method", r.Method, "path", raw)
				}
				p.refusePlaintext(ex)
				return
			}
		}
		if pathErr != nil {
			p.fail(ex, http.StatusBadRequest, reasonInboundInvalidPath, pathErr)
			return
		}
		var policies []policy.AuthorizationPolicy
		if inb != nil {
			policies = inb.AuthorizationPolicies
		}
		authority := r.Host
		if authority == "" {
			authority = ex.Authority
		}
		req := policy.Request{
			Method:          r.Method,
			Authority:       authority,
			Path:            path,
			RawQuery:        r.URL.RawQuery,
			Port:            port,
			Header:          r.Header,
			SourcePrincipal: ci.principal,
			SourceIP:        ci.remote.Addr(),
			DestinationIP:   ci.origDst.Addr(),
		}
		d := policy.Authorize(policies, &req)
		if d.Audited != nil {
			p.logAudit(r.Context(), &req, d)
		}
		p.countAuthz(false, d.Allowed, ci.origDst, decisionReason(d.Reason), d.Policy)
		if !d.Allowed {
			if p.log.Enabled(r.Context(), slog.LevelDebug) {
				p.log.Debug("request denied by authorization policy", decisionAttrs(&req, d)...)
			}
			p.answerInbound(ex, http.StatusForbidden, reasonInboundForbidden, rbacDeniedBody)
			return
		}
		next.ServeExchange(ex)
	})
}

// admitInbound applies the inbound policy to an opaque TCP connection to dst (meshed or not):
// plaintext to a STRICT port is refused, then policy.Authorize decides with Request.TCP
// (so rules about methods, paths, hosts or headers never allow it).
func (p *Proxy) admitInbound(ci *connInfo, dst netip.AddrPort) bool {
	if p.opts.Policy == nil {
		return true
	}
	inb := p.opts.Policy.Inbound()
	port := uint32(dst.Port())
	if !ci.meshed && inb != nil && policy.MTLSMode(inb.PeerAuthentication, port) == policy.ModeStrict {
		p.countAuthz(true, false, dst, reasonInboundMTLS, nil)
		if p.log.Enabled(context.Background(), slog.LevelDebug) {
			p.log.Debug("refused a plaintext connection: the port is STRICT", "source", ci.remote.String(), "port", port)
		}
		return false
	}
	var policies []policy.AuthorizationPolicy
	if inb != nil {
		policies = inb.AuthorizationPolicies
	}
	req := policy.Request{
		Port:            port,
		SourcePrincipal: ci.principal,
		SourceIP:        ci.remote.Addr(),
		DestinationIP:   dst.Addr(),
		TCP:             true,
	}
	d := policy.Authorize(policies, &req)
	if d.Audited != nil {
		p.logAudit(context.Background(), &req, d)
	}
	p.countAuthz(true, d.Allowed, dst, decisionReason(d.Reason), d.Policy)
	if !d.Allowed && p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("connection denied by authorization policy", decisionAttrs(&req, d)...)
	}
	return d.Allowed
}

// logAudit logs a request or connection an AUDIT policy matched, once.
func (p *Proxy) logAudit(ctx context.Context, req *policy.Request, d policy.Decision) {
	p.log.Log(ctx, slog.LevelInfo, "authorization audit", append(decisionAttrs(req, d), "audit_policy", policyName(d.Audited))...)
}

// decisionAttrs describe a decision for the log.
func decisionAttrs(req *policy.Request, d policy.Decision) []any {
	attrs := []any{
		"allowed", d.Allowed, "reason", string(d.Reason), "policy", policyName(d.Policy),
		"principal", req.SourcePrincipal, "source_ip", req.SourceIP.String(),
		"destination", netip.AddrPortFrom(req.DestinationIP, uint16(req.Port)).String(),
	}
	if req.TCP {
		return append(attrs, "protocol", "tcp")
	}
	return append(attrs, "protocol", "http", "method", req.Method, "authority", req.Authority, "path", req.Path)
}

func policyName(ap *policy.AuthorizationPolicy) string {
	if ap == nil {
		return ""
	}
	return ap.Namespace + "/" + ap.Name
}

// decisionReason is the metrics reason label of an Authorize decision.
func decisionReason(r policy.DecisionReason) string {
	switch r {
	case policy.ReasonAllowed:
		return "allowed"
	case policy.ReasonDenied:
		return "denied"
	case policy.ReasonNoAllowPolicy:
		return "no-allow-policy"
	case policy.ReasonNoAllowMatched:
		return "no-allow-matched"
	}
	return string(r)
}

// setRequestPath makes u's path path (escaped, as NormalizePath returns it), so that the
// request is forwarded with exactly that path.
func setRequestPath(u *url.URL, path string) {
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		unescaped = path // cannot happen: NormalizePath checked every escape
	}
	u.Path, u.RawPath = unescaped, ""
	if unescaped != path {
		u.RawPath = path
	}
}

// answerInbound sends a response the proxy makes itself: status, the reason in ProxyErrorHeader,
// and body.
func (p *Proxy) answerInbound(ex *Exchange, status int, reason, body string) {
	ex.Status = status
	h := ex.W.Header()
	h.Set(ProxyErrorHeader, reason)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	ex.W.WriteHeader(status)
	_, _ = io.WriteString(ex.W, body)
}

// refusePlaintext answers 403 mtls-required and closes the connection: HTTP/1 takes the
// connection over to say "Connection: close" and close it; HTTP/2 gets a GOAWAY (net/http
// sends one for a response with "Connection: close").
func (p *Proxy) refusePlaintext(ex *Exchange) {
	if hj, ok := ex.W.(http.Hijacker); ok && !ex.Conn.h2 {
		if c, rw, err := hj.Hijack(); err == nil {
			ex.Status = http.StatusForbidden
			var b strings.Builder
			b.WriteString("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n")
			b.WriteString(ProxyErrorHeader + ": " + reasonInboundMTLS + "\r\n")
			b.WriteString("Content-Length: " + strconv.Itoa(len(mtlsRequiredBody)) + "\r\n\r\n")
			if ex.R.Method != http.MethodHead {
				b.WriteString(mtlsRequiredBody)
			}
			_, _ = rw.WriteString(b.String())
			if rw.Flush() == nil {
				lingerClose(c)
			}
			c.Close()
			return
		}
	}
	ex.W.Header().Set("Connection", "close")
	p.answerInbound(ex, http.StatusForbidden, reasonInboundMTLS, mtlsRequiredBody)
}

// lingerClose half-closes c and reads what the client still sends, for refusalLinger at
// most, so that closing does not reset the connection before the client read the answer.
func lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(refusalLinger))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 256<<10))
}

// authzMetrics are the inbound authorization counters of one metrics registry, with
// Linkerd's names: inbound_{http,tcp}_authz_{allow,deny}_total, labelled target_addr (the
// application's address), authz_name (namespace/name of the AuthorizationPolicy that
// decided, empty when none did) and reason.
type authzMetrics struct {
	vecs     [2][2]*prometheus.CounterVec // [tcp][allow]
	mu       sync.RWMutex
	children map[authzKey]prometheus.Counter
}

type authzKey struct {
	tcp, allow      bool
	target          netip.AddrPort
	reason          string
	namespace, name string
}

var (
	authzMetricsMu sync.Mutex
	authzByReg     sync.Map // *metrics.Registry -> *authzMetrics
)

// authzMetricsOf returns the counters of reg, registering them on first use.
func authzMetricsOf(reg *metrics.Registry) *authzMetrics {
	if m, ok := authzByReg.Load(reg); ok {
		return m.(*authzMetrics)
	}
	authzMetricsMu.Lock()
	defer authzMetricsMu.Unlock()
	if m, ok := authzByReg.Load(reg); ok {
		return m.(*authzMetrics)
	}
	m := &authzMetrics{children: map[authzKey]prometheus.Counter{}}
	labels := []string{"target_addr", "authz_name", "reason"}
	for i, protocol := range []string{"http", "tcp"} {
		what := "HTTP requests"
		if protocol == "tcp" {
			what = "TCP connections"
		}
		for j, outcome := range []string{"deny", "allow"} {
			help := "Total count of inbound " + what + " the inbound policy allowed (AuthorizationPolicy, or a kubelet probe)."
			if outcome == "deny" {
				help = "Total count of inbound " + what + " the inbound policy denied (PeerAuthentication STRICT, or AuthorizationPolicy)."
			}
			vec := prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "inbound_" + protocol + "_authz_" + outcome + "_total", Help: help,
			}, labels)
			if err := reg.Registerer().Register(vec); err != nil {
				var already prometheus.AlreadyRegisteredError
				if errors.As(err, &already) {
					if existing, ok := already.ExistingCollector.(*prometheus.CounterVec); ok {
						vec = existing
					}
				}
			}
			m.vecs[i][j] = vec
		}
	}
	authzByReg.Store(reg, m)
	return m
}

// countAuthz counts one decision; decider is the policy that decided, if any.
func (p *Proxy) countAuthz(tcp, allow bool, target netip.AddrPort, reason string, decider *policy.AuthorizationPolicy) {
	m := authzMetricsOf(p.metrics)
	key := authzKey{tcp: tcp, allow: allow, target: target, reason: reason}
	if decider != nil {
		key.namespace, key.name = decider.Namespace, decider.Name
	}
	m.mu.RLock()
	c, ok := m.children[key]
	m.mu.RUnlock()
	if !ok {
		i, j := 0, 0
		if tcp {
			i = 1
		}
		if allow {
			j = 1
		}
		c = m.vecs[i][j].WithLabelValues(target.String(), policyName(decider), reason)
		m.mu.Lock()
		m.children[key] = c
		m.mu.Unlock()
	}
	c.Inc()
}
