package standalone

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver resolves a host name to IP addresses, in the order the DNS answered.
type Resolver interface {
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
}

// Ticker is the part of time.Ticker the DNS refresh loop uses; tests inject a fake.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// NewRealTicker returns a Ticker backed by time.NewTicker.
func NewRealTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

// DNSResolver resolves names as Envoy's c-ares resolver does: first from the hosts file,
// then A and AAAA records with miekg/dns against the servers and search domains of a
// resolv.conf file.
type DNSResolver struct {
	// ResolvConf is the file to read (/etc/resolv.conf when empty).
	ResolvConf string
	// HostsFile is read before any query (/etc/hosts when empty; "-" skips it).
	HostsFile string
	// Timeout bounds one query (2 s when zero).
	Timeout time.Duration
	// Port overrides the servers' port (resolv.conf has none; 53). For tests.
	Port string
}

// LookupAddrs resolves host. IP literals and "localhost" answer without a query.
func (r *DNSResolver) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if host == "localhost" {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	if addrs := r.fromHosts(host); len(addrs) > 0 {
		return addrs, nil
	}
	path := r.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	if r.Port != "" {
		conf.Port = r.Port
	}
	client := &dns.Client{Timeout: timeout}
	lastErr := fmt.Errorf("no DNS servers in %s", path)
	for _, name := range conf.NameList(host) {
		var out []netip.Addr
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), qt)
			m.RecursionDesired = true
			for _, srv := range conf.Servers {
				in, _, err := client.ExchangeContext(ctx, m, net.JoinHostPort(srv, conf.Port))
				if err != nil {
					lastErr = err
					continue
				}
				if in.Rcode != dns.RcodeSuccess {
					lastErr = fmt.Errorf("%s: %s", name, dns.RcodeToString[in.Rcode])
					break
				}
				for _, rr := range in.Answer {
					switch v := rr.(type) {
					case *dns.A:
						if a, ok := netip.AddrFromSlice(v.A); ok {
							out = append(out, a.Unmap())
						}
					case *dns.AAAA:
						if a, ok := netip.AddrFromSlice(v.AAAA); ok {
							out = append(out, a)
						}
					}
				}
				break
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	return nil, errors.Join(fmt.Errorf("resolve %s: no addresses", host), lastErr)
}

// fromHosts returns host's addresses in the hosts file, in file order.
func (r *DNSResolver) fromHosts(host string) []netip.Addr {
	path := r.HostsFile
	switch path {
	case "-":
		return nil
	case "":
		path = "/etc/hosts"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var out []netip.Addr
	for line := range strings.SplitSeq(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, name := range f[1:] {
			if strings.TrimSuffix(strings.ToLower(name), ".") == host {
				out = append(out, a.Unmap())
				break
			}
		}
	}
	return out
}
