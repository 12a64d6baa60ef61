package standalone

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDNSResolverUsesResolvConfAndSearchDomains(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Name == "user-service.mesh.test." && q.Question[0].Qtype == dns.TypeA {
			for _, ip := range []string{"127.0.0.7", "127.0.0.8"} { // answers only, never dialled
				rr, _ := dns.NewRR("user-service.mesh.test. 5 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			}
		} else if q.Question[0].Qtype == dns.TypeA {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	defer func() { _ = srv.Shutdown() }()
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.1\nsearch mesh.test\noptions ndots:5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &DNSResolver{ResolvConf: conf, HostsFile: "-", Port: port, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := r.LookupAddrs(ctx, "user-service")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].String() != "127.0.0.7" || got[1].String() != "127.0.0.8" {
		t.Fatalf("addrs = %v", got)
	}
	if _, err := r.LookupAddrs(ctx, "missing"); err == nil {
		t.Fatal("want an error for a name that does not exist")
	}
	if got, err := r.LookupAddrs(ctx, "127.0.0.3"); err != nil || got[0].String() != "127.0.0.3" {
		t.Fatalf("IP literal: %v %v", got, err)
	}
}

// The hosts file answers before DNS, as with Envoy's c-ares resolver.
func TestDNSResolverReadsTheHostsFileFirst(t *testing.T) {
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("# demo\n127.0.0.2 user-service us\n127.0.0.3 order-service # comment\n::1 user-service\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Port 1 has no DNS server: only the hosts file can answer.
	r := &DNSResolver{ResolvConf: conf, HostsFile: hosts, Port: "1", Timeout: 200 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := r.LookupAddrs(ctx, "User-Service")
	if err != nil || len(got) != 2 || got[0].String() != "127.0.0.2" || got[1].String() != "::1" {
		t.Fatalf("user-service = %v, %v", got, err)
	}
	if got, err := r.LookupAddrs(ctx, "order-service."); err != nil || len(got) != 1 || got[0].String() != "127.0.0.3" {
		t.Fatalf("order-service = %v, %v", got, err)
	}
	if _, err := r.LookupAddrs(ctx, "absent"); err == nil {
		t.Fatal("a name in neither the hosts file nor DNS must fail")
	}
}

// The seed's file, with only ports changed, resolves user-service and order-service through
// a real DNS server (miekg/dns) read from a resolv.conf, as mesh-proxy --config does.
func TestSeedConfigWithAnInTestDNSServer(t *testing.T) {
	_, up := backend(t, "users")
	_, op := backend(t, "orders")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		switch name := q.Question[0].Name; {
		case q.Question[0].Qtype != dns.TypeA:
		case name == "user-service." || name == "order-service.":
			rr, _ := dns.NewRR(name + " 5 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	defer func() { _ = srv.Shutdown() }()
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startWithResolver(t, seedAdapted(t, up, op), &DNSResolver{ResolvConf: conf, HostsFile: "-", Port: port, Timeout: 2 * time.Second})
	for path, want := range map[string]string{"/api/users/7": "users /api/users/7", "/api/orders/9": "orders /api/orders/9"} {
		if code, body := h.get("listener_0", "", path); code != 200 || body != want {
			t.Errorf("%s: %d %q, want 200 %q", path, code, body, want)
		}
	}
}
