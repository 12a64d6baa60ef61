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
	r := &DNSResolver{ResolvConf: conf, Port: port, Timeout: 2 * time.Second}
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
