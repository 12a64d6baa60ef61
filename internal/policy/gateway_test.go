package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/policy/translate"
)

// seedModel translates the seed's Istio files (demo/istio) as applied with -n microservices.
func seedModel(t *testing.T) *policy.Model {
	t.Helper()
	var all []byte
	for _, f := range []string{"istio-gateway.yaml", "traffic-splitting.yaml", "circuit-breaker.yaml", "mtls-policy.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "demo", "istio", f))
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, data...), []byte("\n---\n")...)
	}
	res, err := translate.TranslateYAML(all, translate.Options{DefaultNamespace: "microservices"})
	if err != nil {
		t.Fatal(err)
	}
	return &res.Model
}

func TestSeedGateway(t *testing.T) {
	m := seedModel(t)
	gw := policy.BuildGatewayPolicy(m, map[string]string{"istio": "ingressgateway", "app": "lightmesh-ingress"})
	if ports := gw.Ports(); len(ports) != 1 || ports[0] != 80 {
		t.Fatalf("ports %v, want [80]", ports)
	}
	for _, tc := range []struct {
		port              uint32
		authority, path   string
		wantHost, wantSrc string
	}{
		{80, "shop.example.com", "/api/users/1", "user-service.microservices.svc.cluster.local", "VirtualService microservices/microservices-vs"},
		{80, "10.0.0.1:30080", "/api/orders/7", "order-service.microservices.svc.cluster.local", "VirtualService microservices/microservices-vs"},
		{80, "anything", "/other", "", "VirtualService microservices/microservices-vs"},
	} {
		vh, ok := gw.Select(tc.port, tc.authority)
		if !ok || vh.Source != tc.wantSrc {
			t.Fatalf("%s:%d: route table %v %v, want %s", tc.authority, tc.port, vh, ok, tc.wantSrc)
		}
		route, ok := policy.SelectRoute(vh.Routes, &policy.Request{Method: "GET", Path: tc.path, Authority: tc.authority})
		switch {
		case tc.wantHost == "" && ok:
			t.Errorf("%s: matched a route, want none (404)", tc.path)
		case tc.wantHost != "" && (!ok || route.Destinations[0].Host != tc.wantHost || route.Destinations[0].Port != 80):
			t.Errorf("%s: route %+v, want %s:80", tc.path, route, tc.wantHost)
		}
	}
	if _, ok := gw.Select(8080, "shop.example.com"); ok {
		t.Error("a port the Gateway does not listen on has a route table")
	}
	// The circuit breaker of user-service travels with the gateway's routes to it.
	if d := gw.Destination("user-service.microservices.svc.cluster.local"); d == nil || d.TrafficPolicy.ConnectionPool == nil {
		t.Errorf("the gateway lacks user-service's DestinationRule: %+v", gw.Destinations)
	}
	// The sidecars' split (traffic-splitting.yaml, bound to the mesh) is not the gateway's.
	for _, vh := range gw.VirtualHosts {
		if vh.Source == "VirtualService microservices/user-service" {
			t.Error("a mesh-only VirtualService is bound to the gateway")
		}
	}

	// Pods the Gateway's selector does not match get nothing.
	if other := policy.BuildGatewayPolicy(m, map[string]string{"app": "user-service"}); len(other.Listeners) != 0 || len(other.VirtualHosts) != 0 {
		t.Errorf("a pod without istio=ingressgateway got %+v", other)
	}
}

func TestGatewayListenerHosts(t *testing.T) {
	m := &policy.Model{
		Gateways: []policy.Gateway{
			{Namespace: "web", Name: "wild", Selector: map[string]string{"gw": "1"}, Servers: []policy.GatewayServer{{Port: 80, Protocol: "HTTP", Hosts: []string{"*/*"}}}},
			{Namespace: "web", Name: "shop", Selector: map[string]string{"gw": "1"}, Servers: []policy.GatewayServer{{Port: 80, Protocol: "HTTP", Hosts: []string{"./shop.example.com"}}}},
			{Namespace: "web", Name: "noselector", Servers: []policy.GatewayServer{{Port: 81, Protocol: "HTTP", Hosts: []string{"*"}}}},
		},
		VirtualHosts: []policy.VirtualHost{
			{Source: "catch-all", Hosts: []string{"*"}, Gateways: []string{"web/wild"}},
			{Source: "shop", Hosts: []string{"shop.example.com"}, Gateways: []string{"web/shop"}},
			{Source: "mesh", Hosts: []string{"*"}, Gateways: []string{policy.MeshGateway}},
		},
	}
	gw := policy.BuildGatewayPolicy(m, map[string]string{"gw": "1"})
	if gw.Listeners[0].Gateway != "web/shop" || gw.Listeners[0].Hosts[0] != "shop.example.com" {
		t.Errorf("the exact-host listener is not first: %+v", gw.Listeners)
	}
	for authority, want := range map[string]string{"shop.example.com": "shop", "SHOP.example.com.": "shop", "other.example.com": "catch-all"} {
		if vh, ok := gw.Select(80, authority); !ok || vh.Source != want {
			t.Errorf("%s: %v %v, want %s", authority, vh, ok, want)
		}
	}
	if len(gw.VirtualHosts) != 2 {
		t.Errorf("route tables %+v, want the two bound to the gateways", gw.VirtualHosts)
	}
	if slices := gw.Ports(); len(slices) != 1 {
		t.Errorf("a Gateway without selector selected the pod: ports %v", slices)
	}
}

// HTTPS servers: the certificate is chosen by SNI among the servers of the port (exact host
// before the longest wildcard, "*" for clients without SNI); an HTTP server with
// httpsRedirect redirects; credentials are filled by the lookup, a failed lookup leaves the
// listener without one and says why.
func TestGatewayHTTPSListeners(t *testing.T) {
	https := func(cred string) *policy.GatewayTLS {
		return &policy.GatewayTLS{Mode: policy.GatewayTLSSimple, CredentialName: cred}
	}
	m := &policy.Model{Gateways: []policy.Gateway{
		{Namespace: "web", Name: "a", Selector: map[string]string{"gw": "1"}, Servers: []policy.GatewayServer{
			{Port: 443, Protocol: "HTTPS", Hosts: []string{"*"}, TLS: https("default-cert")},
			{Port: 443, Protocol: "HTTPS", Hosts: []string{"*.example.com"}, TLS: https("wild-cert")},
			{Port: 443, Protocol: "HTTPS", Hosts: []string{"web/shop.example.com"}, TLS: &policy.GatewayTLS{Mode: policy.GatewayTLSMutual, CredentialName: "shop-cert"}},
			{Port: 443, Protocol: "HTTPS", Hosts: []string{"*.api.example.com"}, TLS: https("api-cert")},
			{Port: 80, Protocol: "HTTP", Hosts: []string{"redirect.example.com"}, TLS: &policy.GatewayTLS{HTTPSRedirect: true}},
			{Port: 80, Protocol: "HTTP", Hosts: []string{"*"}},
		}},
	}}
	gw := policy.BuildGatewayPolicy(m, map[string]string{"gw": "1"})
	if !gw.TLSPort(443) || gw.TLSPort(80) {
		t.Errorf("TLS ports: 443 %v, 80 %v", gw.TLSPort(443), gw.TLSPort(80))
	}
	for sni, want := range map[string]string{
		"shop.example.com":   "shop-cert",
		"SHOP.example.com.":  "shop-cert",
		"x.example.com":      "wild-cert",
		"v1.api.example.com": "api-cert",
		"other.org":          "default-cert",
		"":                   "default-cert",
	} {
		l := gw.ListenerForSNI(443, sni)
		if l == nil || l.TLS.CredentialName != want {
			t.Errorf("SNI %q: listener %+v, want credential %s", sni, l, want)
		}
	}
	if l := gw.ListenerForSNI(80, "shop.example.com"); l != nil {
		t.Errorf("an HTTP port has an HTTPS listener: %+v", l)
	}
	onlyShop := policy.BuildGatewayPolicy(&policy.Model{Gateways: []policy.Gateway{{Namespace: "web", Name: "s", Selector: map[string]string{"gw": "1"},
		Servers: []policy.GatewayServer{{Port: 443, Protocol: "HTTPS", Hosts: []string{"shop.example.com"}, TLS: https("shop-cert")}}}}}, map[string]string{"gw": "1"})
	if l := onlyShop.ListenerForSNI(443, "other.example.com"); l != nil {
		t.Errorf("a server name no server lists got %+v", l)
	}
	if l := onlyShop.ListenerForSNI(443, ""); l != nil {
		t.Errorf("a client without SNI got a certificate of a host-specific server: %+v", l)
	}

	if !gw.HTTPSRedirect(80, "redirect.example.com:30080") || gw.HTTPSRedirect(80, "other.example.com") || gw.HTTPSRedirect(443, "redirect.example.com") {
		t.Error("httpsRedirect applies to other hosts or ports, or not to its own")
	}

	var asked []string
	gw.ResolveCredentials(func(name string, mutual bool) (*policy.Credential, error) {
		asked = append(asked, name)
		if name == "wild-cert" {
			return nil, errors.New("secret lightmesh/wild-cert does not exist")
		}
		if mutual != (name == "shop-cert") {
			t.Errorf("%s: mutual %v", name, mutual)
		}
		return &policy.Credential{CertChain: "cert of " + name, PrivateKey: "key"}, nil
	})
	if len(asked) != 4 {
		t.Errorf("looked up %v, want the 4 HTTPS servers' credentials", asked)
	}
	if l := gw.ListenerForSNI(443, "x.example.com"); l.TLS.Credential != nil || !strings.Contains(l.TLS.Error, "wild-cert does not exist") {
		t.Errorf("missing Secret: %+v", l.TLS)
	}
	if l := gw.ListenerForSNI(443, "shop.example.com"); l.TLS.Credential == nil || l.TLS.Credential.CertChain != "cert of shop-cert" || l.TLS.Error != "" {
		t.Errorf("shop: %+v", l.TLS)
	}
	// The model the policy was built from keeps no key material.
	for _, s := range m.Gateways[0].Servers {
		if s.TLS != nil && s.TLS.Mode != "" && s.TLS.CredentialName == "" {
			t.Errorf("the model changed: %+v", s)
		}
	}
}
