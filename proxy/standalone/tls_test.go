package standalone

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key (PEM) for cn with the given SANs.
func (ca *testCA) issue(t *testing.T, cn string, dns []string, uris []string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: dns,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tlsCluster(name, port, tlsContext string) string {
	return staticCluster(name, port) + `    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
` + tlsContext
}

func TestUpstreamTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t, "test CA"), newTestCA(t, "other CA")
	srvCert, srvKey := ca.issue(t, "backend", []string{"backend.test", "*.wild.test"}, []string{"spiffe://cluster.local/ns/a/sa/b"}, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, "proxy-client", nil, nil, x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := ""
		if len(r.TLS.PeerCertificates) > 0 {
			client = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		_, _ = fmt.Fprintf(w, "sni=%s client=%s alpn=%s", r.TLS.ServerName, client, r.TLS.NegotiatedProtocol)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs,
		MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	caFile := writeFile(t, dir, "ca.pem", ca.pem)
	otherFile := writeFile(t, dir, "other.pem", other.pem)
	certFile := writeFile(t, dir, "client.pem", cliCert)
	keyFile := writeFile(t, dir, "client-key.pem", cliKey)
	san := func(typ, v string) string {
		return "            match_typed_subject_alt_names:\n            - san_type: " + typ + "\n              matcher: {exact: \"" + v + "\"}\n"
	}
	h := start(t, httpConfig(`
              - match: {prefix: "/ok"}
                route: {cluster: ok}
              - match: {prefix: "/uri"}
                route: {cluster: uri}
              - match: {prefix: "/wild"}
                route: {cluster: wild}
              - match: {prefix: "/wrongsan"}
                route: {cluster: wrongsan}
              - match: {prefix: "/unknownca"}
                route: {cluster: unknownca}
`, tlsCluster("ok", port, `        sni: backend.test
        common_tls_context:
          alpn_protocols: ["http/1.1"]
          tls_certificates:
          - certificate_chain: {filename: `+certFile+`}
            private_key: {filename: `+keyFile+`}
          validation_context:
            trusted_ca: {filename: `+caFile+`}
`+san("DNS", "backend.test"))+
		tlsCluster("uri", port, `        common_tls_context:
          validation_context:
            trusted_ca: {inline_string: `+strconv.Quote(string(ca.pem))+`}
`+san("URI", "spiffe://cluster.local/ns/a/sa/b"))+
		tlsCluster("wild", port, `        common_tls_context:
          validation_context:
            trusted_ca: {filename: `+caFile+`}
`+san("DNS", "a.wild.test"))+
		tlsCluster("wrongsan", port, `        sni: backend.test
        common_tls_context:
          validation_context:
            trusted_ca: {filename: `+caFile+`}
`+san("DNS", "other.test"))+
		tlsCluster("unknownca", port, `        sni: backend.test
        common_tls_context:
          validation_context:
            trusted_ca: {filename: `+otherFile+`}
`)), nil)

	if code, body := h.get("http", "", "/ok"); code != 200 || body != "sni=backend.test client=proxy-client alpn=http/1.1" {
		t.Errorf("TLS with SNI, client certificate, CA and DNS SAN: %d %q", code, body)
	}
	if code, body := h.get("http", "", "/uri"); code != 200 || body != "sni= client= alpn=" {
		t.Errorf("inline CA, URI SAN, no SNI: %d %q", code, body)
	}
	if code, body := h.get("http", "", "/wild"); code != 200 {
		t.Errorf("wildcard DNS SAN: %d %q", code, body)
	}
	for _, path := range []string{"/wrongsan", "/unknownca"} {
		code, body := h.get("http", "", path)
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "upstream connect error") {
			t.Errorf("%s: %d %q, want 503 upstream connect error", path, code, body)
		}
	}
}

func TestUpstreamTLSRefusesUnloadableFiles(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.pem", []byte("not a certificate"))
	h := httpConfig(`
              - match: {prefix: "/"}
                route: {cluster: c}
`, tlsCluster("c", "1", `        common_tls_context:
          validation_context:
            trusted_ca: {filename: `+bad+`}
`))
	if _, err := newFromYAML(h); err == nil || !strings.Contains(err.Error(), "trusted_ca holds no PEM certificate") {
		t.Fatalf("err = %v, want trusted_ca refused", err)
	}
}
