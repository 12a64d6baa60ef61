package standalone

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/proxy/envoy"
)

// DefaultRouteTimeout is Envoy's route timeout default.
const DefaultRouteTimeout = 15 * time.Second

type weighted struct {
	cluster string
	weight  uint32
}

type headerMatch struct {
	name   string
	match  func(v string, present bool) bool
	invert bool
}

// route is a compiled Envoy route.
type route struct {
	prefix     *string
	path       *string
	re         *regexp.Regexp
	headers    []headerMatch
	clusters   []weighted
	total      uint32
	timeout    time.Duration
	retryOn    map[string]bool
	retries    int
	perTry     time.Duration
	retryCodes map[int]bool
	// retry back-off (Envoy's defaults: 25 ms base, 10x base max)
	backOffBase, backOffMax time.Duration
	rewrite                 string
	hasRewrite              bool
}

type vhost struct {
	name    string
	domains []string
	routes  []*route
}

// routeTable is a compiled route_config.
type routeTable struct{ vhosts []*vhost }

func compileRegex(m *envoy.RegexMatcher) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + m.Regex + ")$")
}

func compileString(m *envoy.StringMatcher) (func(string, bool) bool, error) {
	fold := func(s string) string {
		if m.IgnoreCase {
			return strings.ToLower(s)
		}
		return s
	}
	switch {
	case m.Exact != nil:
		w := fold(*m.Exact)
		return func(v string, ok bool) bool { return ok && fold(v) == w }, nil
	case m.Prefix != nil:
		w := fold(*m.Prefix)
		return func(v string, ok bool) bool { return ok && strings.HasPrefix(fold(v), w) }, nil
	case m.Suffix != nil:
		w := fold(*m.Suffix)
		return func(v string, ok bool) bool { return ok && strings.HasSuffix(fold(v), w) }, nil
	case m.Contains != nil:
		w := fold(*m.Contains)
		return func(v string, ok bool) bool { return ok && strings.Contains(fold(v), w) }, nil
	case m.SafeRegex != nil:
		re, err := compileRegex(m.SafeRegex)
		if err != nil {
			return nil, err
		}
		return func(v string, ok bool) bool { return ok && re.MatchString(v) }, nil
	}
	return func(_ string, ok bool) bool { return ok }, nil
}

func compileHeader(h envoy.HeaderMatcher) (headerMatch, error) {
	hm := headerMatch{name: http.CanonicalHeaderKey(h.Name), invert: h.InvertMatch}
	var err error
	switch {
	case h.ExactMatch != nil:
		hm.match, err = compileString(&envoy.StringMatcher{Exact: h.ExactMatch})
	case h.PrefixMatch != nil:
		hm.match, err = compileString(&envoy.StringMatcher{Prefix: h.PrefixMatch})
	case h.SuffixMatch != nil:
		hm.match, err = compileString(&envoy.StringMatcher{Suffix: h.SuffixMatch})
	case h.SafeRegexMatch != nil:
		hm.match, err = compileString(&envoy.StringMatcher{SafeRegex: h.SafeRegexMatch})
	case h.StringMatch != nil:
		hm.match, err = compileString(h.StringMatch)
	case h.PresentMatch != nil:
		want := *h.PresentMatch
		hm.match = func(_ string, ok bool) bool { return ok == want }
	default:
		hm.match = func(_ string, ok bool) bool { return ok }
	}
	return hm, err
}

func newRouteTable(rc *envoy.RouteConfiguration) (*routeTable, error) {
	t := &routeTable{}
	if rc == nil {
		return t, nil
	}
	for _, vh := range rc.VirtualHosts {
		v := &vhost{name: vh.Name}
		for _, d := range vh.Domains {
			v.domains = append(v.domains, strings.ToLower(d))
		}
		for _, r := range vh.Routes {
			cr := &route{prefix: r.Match.Prefix, path: r.Match.Path, timeout: DefaultRouteTimeout}
			if r.Match.SafeRegex != nil {
				re, err := compileRegex(r.Match.SafeRegex)
				if err != nil {
					return nil, fmt.Errorf("virtual host %s: %w", vh.Name, err)
				}
				cr.re = re
			}
			for _, h := range r.Match.Headers {
				hm, err := compileHeader(h)
				if err != nil {
					return nil, fmt.Errorf("virtual host %s: header %s: %w", vh.Name, h.Name, err)
				}
				cr.headers = append(cr.headers, hm)
			}
			a := r.Route
			if a.WeightedClusters != nil {
				for _, w := range a.WeightedClusters.Clusters {
					cr.clusters = append(cr.clusters, weighted{w.Name, w.Weight})
					cr.total += w.Weight
				}
				if tw := a.WeightedClusters.TotalWeight; tw != nil && *tw > 0 {
					cr.total = *tw
				}
			} else {
				cr.clusters = []weighted{{a.Cluster, 1}}
				cr.total = 1
			}
			if a.Timeout != nil {
				cr.timeout = a.Timeout.Duration // 0 disables the timeout
			}
			if a.PrefixRewrite != "" {
				cr.rewrite, cr.hasRewrite = a.PrefixRewrite, true
			}
			if p := a.RetryPolicy; p != nil {
				cr.retryOn = map[string]bool{}
				for _, on := range strings.Split(p.RetryOn, ",") {
					if on = strings.TrimSpace(on); on != "" {
						cr.retryOn[on] = true
					}
				}
				cr.retries = 1
				cr.backOffBase = DefaultRetryBaseInterval
				if bo := p.RetryBackOff; bo != nil && bo.BaseInterval != nil && bo.BaseInterval.Duration > 0 {
					cr.backOffBase = bo.BaseInterval.Duration
				}
				cr.backOffMax = 10 * cr.backOffBase
				if bo := p.RetryBackOff; bo != nil && bo.MaxInterval != nil && bo.MaxInterval.Duration >= cr.backOffBase {
					cr.backOffMax = bo.MaxInterval.Duration
				}
				for _, code := range p.RetriableStatusCodes {
					if cr.retryCodes == nil {
						cr.retryCodes = map[int]bool{}
					}
					cr.retryCodes[int(code)] = true
				}
				if p.NumRetries != nil {
					cr.retries = int(*p.NumRetries)
				}
				if p.PerTryTimeout != nil {
					cr.perTry = p.PerTryTimeout.Duration
				}
			}
			v.routes = append(v.routes, cr)
		}
		t.vhosts = append(t.vhosts, v)
	}
	return t, nil
}

// virtualHost selects by Envoy's order: exact domain, then the longest suffix wildcard
// (*.example.com), then the longest prefix wildcard (example.*), then "*". As in Envoy
// (without strip_port options) the Host is compared with its port.
func (t *routeTable) virtualHost(host string) *vhost {
	host = strings.ToLower(host)
	var suffix, prefix, any *vhost
	sufLen, preLen := -1, -1
	for _, v := range t.vhosts {
		for _, d := range v.domains {
			switch {
			case d == host:
				return v
			case d == "*":
				if any == nil {
					any = v
				}
			case strings.HasPrefix(d, "*"):
				s := d[1:]
				if len(host) > len(s) && strings.HasSuffix(host, s) && len(s) > sufLen {
					suffix, sufLen = v, len(s)
				}
			case strings.HasSuffix(d, "*"):
				p := d[:len(d)-1]
				if len(host) > len(p) && strings.HasPrefix(host, p) && len(p) > preLen {
					prefix, preLen = v, len(p)
				}
			}
		}
	}
	switch {
	case suffix != nil:
		return suffix
	case prefix != nil:
		return prefix
	}
	return any
}

// match returns the first route of the selected virtual host that matches, or nil.
func (t *routeTable) match(host, rawPath string, h http.Header) *route {
	v := t.virtualHost(host)
	if v == nil {
		return nil
	}
	path, _, _ := strings.Cut(rawPath, "?")
	for _, r := range v.routes {
		switch {
		case r.prefix != nil:
			if !strings.HasPrefix(path, *r.prefix) {
				continue
			}
		case r.path != nil:
			if path != *r.path {
				continue
			}
		case r.re != nil:
			if !r.re.MatchString(path) {
				continue
			}
		}
		ok := true
		for _, hm := range r.headers {
			vals, present := h[hm.name]
			val := strings.Join(vals, ",")
			if hm.match(val, present) == hm.invert {
				ok = false
				break
			}
		}
		if ok {
			return r
		}
	}
	return nil
}

// rewritePath applies prefix_rewrite to a path that this route matched.
func (r *route) rewritePath(path string) string {
	if !r.hasRewrite {
		return path
	}
	switch {
	case r.prefix != nil:
		return r.rewrite + strings.TrimPrefix(path, *r.prefix)
	case r.path != nil:
		return r.rewrite + strings.TrimPrefix(path, *r.path)
	}
	return path
}

// pickCluster chooses a cluster by weight.
func (r *route) pickCluster(rng *lockedRand) string {
	if len(r.clusters) == 1 || r.total == 0 {
		return r.clusters[0].cluster
	}
	n := rng.Uint32N(r.total)
	for _, w := range r.clusters {
		if n < w.weight {
			return w.cluster
		}
		n -= w.weight
	}
	return r.clusters[len(r.clusters)-1].cluster
}
