package destination

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds of an ExternalName's re-resolution interval: the answer's TTL, clamped.
const (
	MinExternalNameTTL = 5 * time.Second
	MaxExternalNameTTL = 60 * time.Second
)

// DefaultResolvConf is where the DNS servers for ExternalName services are read.
const DefaultResolvConf = "/etc/resolv.conf"

// dnsTimeout bounds one DNS exchange.
const dnsTimeout = 3 * time.Second

// externalNames resolves the external names of ExternalName services (A and AAAA) while
// some subscriber needs them, each again at its answer's TTL clamped to [MinExternalNameTTL,
// MaxExternalNameTTL]; on failure the last good answer is kept.
type externalNames struct {
	servers []string // host:port
	after   func(time.Duration) <-chan time.Time
	// notify is called with a name whose answer changed.
	notify func(name string)
	log    *slog.Logger
	ctx    context.Context

	mu    sync.Mutex
	names map[string]*externalName
}

type externalName struct {
	refs     map[string]int // namespace -> subscribers
	cancel   context.CancelFunc
	addrs    []netip.Addr
	resolved bool
	lastErr  string
}

// dnsServers returns servers, or those of resolvConf when servers is empty.
func dnsServers(servers []string, resolvConf string) ([]string, error) {
	if len(servers) > 0 {
		return servers, nil
	}
	if resolvConf == "" {
		resolvConf = DefaultResolvConf
	}
	conf, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("read the DNS servers for ExternalName services from %s: %w", resolvConf, err)
	}
	out := make([]string, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		out = append(out, net.JoinHostPort(s, conf.Port))
	}
	return out, nil
}

// current returns what is known of name: its addresses, whether an answer came, and the
// last error.
func (x *externalNames) current(name string) (addrs []netip.Addr, resolved bool, lastErr string) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{ip.Unmap()}, true, ""
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.names[name]
	if !ok {
		return nil, false, ""
	}
	return e.addrs, e.resolved, e.lastErr
}

// acquire starts resolving name for a subscriber of namespace (if no one was).
func (x *externalNames) acquire(name, namespace string) {
	if _, err := netip.ParseAddr(name); err == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.names[name]
	if !ok {
		e = &externalName{refs: map[string]int{}}
		var ctx context.Context
		ctx, e.cancel = context.WithCancel(x.ctx)
		x.names[name] = e
		go x.run(ctx, name, e)
	}
	e.refs[namespace]++
}

// release stops resolving name when its last subscriber is gone.
func (x *externalNames) release(name, namespace string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.names[name]
	if !ok {
		return
	}
	if e.refs[namespace]--; e.refs[namespace] <= 0 {
		delete(e.refs, namespace)
	}
	if len(e.refs) == 0 {
		e.cancel()
		delete(x.names, name)
	}
}

// run resolves name until ctx ends.
func (x *externalNames) run(ctx context.Context, name string, e *externalName) {
	for {
		addrs, ttl, err := x.lookup(ctx, name)
		if ctx.Err() != nil {
			return
		}
		wait := min(max(ttl, MinExternalNameTTL), MaxExternalNameTTL)
		x.mu.Lock()
		changed := false
		if err != nil {
			wait = MinExternalNameTTL
			x.log.Warn("cannot resolve an ExternalName service's name; keeping the last answer", "name", name, "error", err)
			changed = !e.resolved && e.lastErr != err.Error()
			e.lastErr = err.Error()
		} else {
			changed = !e.resolved || !slices.Equal(e.addrs, addrs)
			e.addrs, e.resolved, e.lastErr = addrs, true, ""
		}
		x.mu.Unlock()
		if changed {
			x.notify(name)
		}
		select {
		case <-ctx.Done():
			return
		case <-x.after(wait):
		}
	}
}

// lookup asks for the A and AAAA records of name; the TTL is the smallest of the answers
// (MaxExternalNameTTL for an empty answer). It fails when neither query got an answer.
func (x *externalNames) lookup(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	if len(x.servers) == 0 {
		return nil, 0, errors.New("no DNS server configured")
	}
	var addrs []netip.Addr
	ttl := MaxExternalNameTTL
	var errs []error
	answered := false
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := x.query(ctx, name, qtype)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		answered = true
		for _, rr := range rrs {
			var ip net.IP
			switch r := rr.(type) {
			case *dns.A:
				ip = r.A
			case *dns.AAAA:
				ip = r.AAAA
			default:
				continue
			}
			addr, ok := netip.AddrFromSlice(ip)
			if !ok {
				continue
			}
			addrs = append(addrs, addr.Unmap())
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	}
	if !answered {
		return nil, 0, errors.Join(errs...)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), ttl, nil
}

// query asks each server in turn until one answers with NOERROR.
func (x *externalNames) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	client := &dns.Client{Timeout: dnsTimeout}
	var errs []error
	for _, server := range x.servers {
		qctx, cancel := context.WithTimeout(ctx, dnsTimeout)
		in, _, err := client.ExchangeContext(qctx, m, server)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s at %s: %w", dns.TypeToString[qtype], name, server, err))
			continue
		}
		if in.Rcode != dns.RcodeSuccess {
			errs = append(errs, fmt.Errorf("%s %s at %s: %s", dns.TypeToString[qtype], name, server, strings.ToLower(dns.RcodeToString[in.Rcode])))
			continue
		}
		return in.Answer, nil
	}
	return nil, errors.Join(errs...)
}
