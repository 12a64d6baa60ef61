package translate

import (
	"reflect"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// HTTPS Gateway servers, Istio's way: tls.mode SIMPLE (the default) or MUTUAL with a
// credentialName terminate TLS; an HTTP server may redirect to https; PASSTHROUGH and
// certificate files are reported and the server is left out.
func TestGatewayServerTLS(t *testing.T) {
	const header = `apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
`
	cases := []struct {
		name            string
		servers         string
		want            []policy.GatewayServer
		wantUnsupported []string
	}{
		{"simple", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-cert}
`, []policy.GatewayServer{{Port: 443, PortName: "https", Protocol: "HTTPS", Hosts: []string{"shop.example.com"},
			TLS: &policy.GatewayTLS{Mode: "SIMPLE", CredentialName: "shop-cert"}}}, nil},
		{"mode defaults to SIMPLE, mutual kept", `  - port: {number: 443, name: a, protocol: https}
    hosts: [a.example.com]
    tls: {credentialName: a}
  - port: {number: 443, name: b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: MUTUAL, credentialName: b}
`, []policy.GatewayServer{
			{Port: 443, PortName: "a", Protocol: "HTTPS", Hosts: []string{"a.example.com"}, TLS: &policy.GatewayTLS{Mode: "SIMPLE", CredentialName: "a"}},
			{Port: 443, PortName: "b", Protocol: "HTTPS", Hosts: []string{"b.example.com"}, TLS: &policy.GatewayTLS{Mode: "MUTUAL", CredentialName: "b"}},
		}, nil},
		{"http redirect", `  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
`, []policy.GatewayServer{{Port: 80, PortName: "http", Protocol: "HTTP", Hosts: []string{"*"}, TLS: &policy.GatewayTLS{HTTPSRedirect: true}}}, nil},
		{"passthrough left out", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
`, []policy.GatewayServer{{Port: 80, PortName: "http", Protocol: "HTTP", Hosts: []string{"*"}}}, []string{"spec.servers[0].tls.mode"}},
		{"certificate files and extras", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: /etc/cert.pem, privateKey: /etc/key.pem}
  - port: {number: 8443, name: https2, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_3, httpsRedirect: true}
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: c}
`, []policy.GatewayServer{
			{Port: 8443, PortName: "https2", Protocol: "HTTPS", Hosts: []string{"*"}, TLS: &policy.GatewayTLS{Mode: "SIMPLE", CredentialName: "c"}},
			{Port: 8080, PortName: "http", Protocol: "HTTP", Hosts: []string{"*"}},
		}, []string{"spec.servers[0].tls.credentialName", "spec.servers[1].tls.minProtocolVersion", "spec.servers[1].tls.httpsRedirect", "spec.servers[2].tls"}},
		{"https without tls", `  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
`, nil, []string{"spec.servers[0].tls"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := mustTranslate(t, header+c.servers)
			if len(res.Model.Gateways) != 1 {
				t.Fatalf("gateways %+v", res.Model.Gateways)
			}
			if got := res.Model.Gateways[0].Servers; !reflect.DeepEqual(got, c.want) {
				t.Errorf("servers\n got %+v\nwant %+v", got, c.want)
			}
			if got := unsupportedPaths(res); !reflect.DeepEqual(got, c.wantUnsupported) {
				t.Errorf("unsupported %q, want %q: %v", got, c.wantUnsupported, res.Unsupported)
			}
			for _, u := range res.Unsupported {
				if strings.Contains(u.FieldPath, "mode") && !strings.Contains(u.Reason, "SIMPLE and MUTUAL") {
					t.Errorf("the report does not say which modes are supported: %s", u.Reason)
				}
			}
		})
	}
}
