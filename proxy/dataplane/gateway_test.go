package dataplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/policy/translate"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

// The seed's Gateway and VirtualService (demo/istio/istio-gateway.yaml) on a gateway proxy:
// /api/users/... from outside goes to user-service and /api/orders/... to order-service,
// each over mTLS to the service's proxy; anything else gets 404.
func TestGatewayRoutesTheSeedIntoTheMesh(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "demo", "istio", "istio-gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.TranslateYAML(data, translate.Options{DefaultNamespace: "microservices"})
	if err != nil {
		t.Fatal(err)
	}
	gw := policy.BuildGatewayPolicy(&res.Model, map[string]string{"istio": "ingressgateway"})
	users, orders := startApp(t), startApp(t)
	m := newMesh(t, meshConfig{tweakA: func(o *Options) {
		o.Gateway = &GatewayOptions{Listeners: map[uint32]string{80: "127.0.0.1:0"}, Policy: func() *policy.GatewayPolicy { return &gw }}
	}})
	for svc, app := range map[string]*appServer{"user-service": users, "order-service": orders} {
		m.behindB.Store(app.addr, true)
		ep := discovery.Endpoint{Addr: netip.MustParseAddrPort(app.addr), Identity: testpki.ID(t, serverSA)}
		if err := m.table.Add(svc+".microservices.svc.cluster.local:80", ep); err != nil {
			t.Fatal(err)
		}
	}
	addr := m.a.GatewayAddr(80)
	if addr == nil {
		t.Fatal("no gateway listener for port 80")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr.String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "shop.example.com"
		req.Header.Set("Lightmesh-Client-Id", "spiffe://cluster.local/ns/forged/sa/admin")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	code, body, h := get("/api/users/1")
	if code != http.StatusOK || body != "GET /api/users/1 0" || users.requests.Load() != 1 {
		t.Fatalf("/api/users/1: %d %q (user-service saw %d requests)", code, body, users.requests.Load())
	}
	// The forged identity header from outside is gone: the app sees the gateway's verified one.
	if got := h.Get("X-Seen-Client-Id"); got != clientSA {
		t.Errorf("user-service saw client %q, want the gateway's identity %s over mTLS", got, clientSA)
	}
	if code, body, _ := get("/api/orders/7"); code != http.StatusOK || body != "GET /api/orders/7 0" || orders.requests.Load() != 1 {
		t.Errorf("/api/orders/7: %d %q", code, body)
	}
	if code, _, h := get("/admin"); code != http.StatusNotFound || h.Get(ProxyErrorHeader) != reasonNoRoute {
		t.Errorf("/admin: %d %q, want 404 no-route", code, h.Get(ProxyErrorHeader))
	}
	if n := m.a.metrics.Sample("request_total", map[string]string{"direction": "outbound", "tls": "true"}); n != 2 {
		t.Errorf("the gateway counted %v mTLS requests, want 2", n)
	}
}

// serverCA is a throwaway CA that signs gateway server certificates, as a Secret's would be.
type serverCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
	pool *x509.CertPool
}

func newServerCA(t *testing.T, name string) *serverCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &serverCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), pool: pool}
}

// credential issues a certificate for hosts (serial tells rotations apart), as a Secret holds it.
func (ca *serverCA) credential(t *testing.T, serial int64, hosts ...string) *policy.Credential {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &policy.Credential{
		CertChain:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}
}

// HTTPS Gateway servers on the gateway proxy: TLS is terminated with the certificate of the
// server the client's SNI names, the request is routed into the mesh like an HTTP one (over
// HTTP/1 and HTTP/2), a rotated credential is served at the next handshake, a server
// without a credential (missing Secret) fails the handshake, MUTUAL requires a client
// certificate, and an HTTP server with httpsRedirect answers 301.
func TestGatewayTerminatesHTTPS(t *testing.T) {
	ca := newServerCA(t, "test CA")
	shopCred := ca.credential(t, 10, "shop.example.com")
	m := &policy.Model{
		Gateways: []policy.Gateway{{Namespace: "lightmesh", Name: "gw", Selector: map[string]string{"istio": "ingressgateway"}, Servers: []policy.GatewayServer{
			{Port: 443, Protocol: "HTTPS", Hosts: []string{"shop.example.com"}, TLS: &policy.GatewayTLS{Mode: policy.GatewayTLSSimple, CredentialName: "shop"}},
			{Port: 443, Protocol: "HTTPS", Hosts: []string{"*.example.com"}, TLS: &policy.GatewayTLS{Mode: policy.GatewayTLSSimple, CredentialName: "wild"}},
			{Port: 443, Protocol: "HTTPS", Hosts: []string{"secure.example.org"}, TLS: &policy.GatewayTLS{Mode: policy.GatewayTLSMutual, CredentialName: "secure"}},
			{Port: 80, Protocol: "HTTP", Hosts: []string{"*"}, TLS: &policy.GatewayTLS{HTTPSRedirect: true}},
		}}},
		VirtualHosts: []policy.VirtualHost{{Source: "VirtualService shop/vs", Hosts: []string{"*"}, Gateways: []string{"lightmesh/gw"},
			Routes: []policy.Route{{Match: policy.Match{Path: &policy.StringMatch{Kind: policy.MatchPrefix, Value: "/"}},
				Destinations: []policy.WeightedDestination{{Host: "web.shop.svc.cluster.local", Port: 80, Weight: 1}}}}}},
	}
	var current atomic.Pointer[policy.GatewayPolicy]
	setCredentials := func(creds map[string]*policy.Credential) {
		gw := policy.BuildGatewayPolicy(m, map[string]string{"istio": "ingressgateway"})
		gw.ResolveCredentials(func(name string, mutual bool) (*policy.Credential, error) {
			c, ok := creds[name]
			if !ok {
				return nil, fmt.Errorf("secret lightmesh/%s does not exist", name)
			}
			if mutual {
				cc := *c
				cc.CACert = ca.pem
				return &cc, nil
			}
			return c, nil
		})
		current.Store(&gw)
	}
	secureCred := ca.credential(t, 30, "secure.example.org")
	setCredentials(map[string]*policy.Credential{"shop": shopCred, "secure": secureCred})
	app := startApp(t)
	mesh := newMesh(t, meshConfig{tweakA: func(o *Options) {
		o.Gateway = &GatewayOptions{Listeners: map[uint32]string{443: "127.0.0.1:0", 80: "127.0.0.1:0"}, Policy: current.Load}
	}})
	mesh.behindB.Store(app.addr, true)
	if err := mesh.table.Add("web.shop.svc.cluster.local:80", discovery.Endpoint{Addr: netip.MustParseAddrPort(app.addr), Identity: testpki.ID(t, serverSA)}); err != nil {
		t.Fatal(err)
	}
	httpsAddr, httpAddr := mesh.a.GatewayAddr(443).String(), mesh.a.GatewayAddr(80).String()

	// get sends GET path with SNI host over TLS (HTTP/2 when h2) and returns the status, body
	// and the serial of the certificate the gateway presented.
	get := func(host, path string, h2 bool, clientCert *tls.Certificate) (int, string, int64, error) {
		t.Helper()
		cfg := &tls.Config{ServerName: host, RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
		if clientCert != nil {
			cfg.Certificates = []tls.Certificate{*clientCert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, httpsAddr)
			}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + host + path)
		if err != nil {
			return 0, "", 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if h2 != (resp.ProtoMajor == 2) {
			t.Errorf("%s: protocol %s, want HTTP/2 %v", host, resp.Proto, h2)
		}
		return resp.StatusCode, string(body), resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	for _, h2 := range []bool{false, true} {
		code, body, serial, err := get("shop.example.com", "/api/users/1", h2, nil)
		if err != nil || code != http.StatusOK || body != "GET /api/users/1 0" || serial != 10 {
			t.Fatalf("https://shop.example.com (h2 %v): %d %q serial %d %v", h2, code, body, serial, err)
		}
	}
	// *.example.com's Secret is missing: no certificate for those names, the handshake fails.
	if _, _, _, err := get("x.example.com", "/", false, nil); err == nil {
		t.Error("a server whose Secret is missing completed a TLS handshake")
	}
	// An unknown server name gets no certificate either.
	if _, _, _, err := get("other.org", "/", false, nil); err == nil {
		t.Error("a server name no HTTPS server lists completed a TLS handshake")
	}
	// Rotation: the new certificate is served at the next handshake, the wildcard's appears.
	setCredentials(map[string]*policy.Credential{"shop": ca.credential(t, 11, "shop.example.com"), "wild": ca.credential(t, 20, "*.example.com"), "secure": secureCred})
	if _, _, serial, err := get("shop.example.com", "/", false, nil); err != nil || serial != 11 {
		t.Errorf("after rotation: serial %d %v, want the new certificate 11", serial, err)
	}
	if code, _, serial, err := get("x.example.com", "/", false, nil); err != nil || code != http.StatusOK || serial != 20 {
		t.Errorf("after its Secret appeared: %d serial %d %v", code, serial, err)
	}
	// MUTUAL: no client certificate, no handshake; one signed by the credential's CA passes.
	if _, _, _, err := get("secure.example.org", "/", false, nil); err == nil {
		t.Error("a MUTUAL server accepted a client without a certificate")
	}
	clientCred := ca.credential(t, 40, "client.example.org")
	clientCert, err := tls.X509KeyPair([]byte(clientCred.CertChain), []byte(clientCred.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := get("secure.example.org", "/", false, &clientCert); err != nil || code != http.StatusOK {
		t.Errorf("a MUTUAL server with a valid client certificate: %d %v", code, err)
	}

	// httpsRedirect on the HTTP server: 301 to https, port dropped, path and query kept.
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/users/1?x=1", nil)
	req.Host = "shop.example.com:30080"
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://shop.example.com/api/users/1?x=1" {
		t.Errorf("http with httpsRedirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := app.requests.Load(); n != 5 {
		t.Errorf("the app saw %d requests, want 5 (the redirect and failed handshakes reach nothing)", n)
	}
}
