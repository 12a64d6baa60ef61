package discovery

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

func TestParseStaticAndResolve(t *testing.T) {
	s, err := ParseStatic("web.shop.svc.cluster.local:80=10.0.0.5:8080@spiffe://cluster.local/ns/shop/sa/web|10.0.0.6:8080, 10.96.0.1:443=10.0.0.7:6443")
	if err != nil {
		t.Fatal(err)
	}
	dst, found, err := s.Resolve(context.Background(), Target{Authority: "web.shop.svc.cluster.local:80", Addr: netip.MustParseAddrPort("10.96.0.9:80")})
	if err != nil || !found || len(dst.Endpoints) != 2 {
		t.Fatalf("by authority: %v %v %v", dst, found, err)
	}
	if !dst.Endpoints[0].Meshed() || dst.Endpoints[0].Identity.ServiceAccount != "web" || dst.Endpoints[1].Meshed() {
		t.Errorf("endpoints %+v", dst.Endpoints)
	}
	dst, found, _ = s.Resolve(context.Background(), Target{Addr: netip.MustParseAddrPort("10.96.0.1:443")})
	if !found || dst.Endpoints[0].Addr.String() != "10.0.0.7:6443" {
		t.Errorf("by address: %v %v", dst, found)
	}
	if _, found, _ := s.Resolve(context.Background(), Target{Authority: "other:80", Addr: netip.MustParseAddrPort("10.1.1.1:80")}); found {
		t.Error("found an unknown target")
	}
	rr := &RoundRobin{}
	dst, _, _ = s.Resolve(context.Background(), Target{Authority: "web.shop.svc.cluster.local:80"})
	a, _ := rr.Pick(dst)
	b, _ := rr.Pick(dst)
	c, _ := rr.Pick(dst)
	if a.Addr == b.Addr || a.Addr != c.Addr {
		t.Errorf("round robin picked %v %v %v", a.Addr, b.Addr, c.Addr)
	}
}

func TestParseStaticErrors(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:80":                          "write KEY=ENDPOINT",
		"10.0.0.1:80=web:80":                   "write ip:port",
		"10.0.0.1:80=10.0.0.1:80@spiffe://x/y": "invalid SPIFFE ID",
		"web=10.0.0.1:80":                      "neither ip:port nor host:port",
	} {
		if _, err := ParseStatic(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseStatic(%q) = %v, want an error with %q", in, err, want)
		}
	}
}
