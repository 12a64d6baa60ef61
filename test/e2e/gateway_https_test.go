//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// installControlPlane installs lightmesh (mesh install, with extra flags) in a new namespace
// named after prefix, waits until it is available, and removes it when the test ends. It
// returns the namespace.
func installControlPlane(t *testing.T, c *cluster, mesh, prefix string, extra ...string) string {
	t.Helper()
	controlPlane := c.namespace(t, prefix)
	install := runMesh(t, mesh, append([]string{"install", "--ignore-cluster", "--set", "namespace=" + controlPlane}, extra...)...)
	if _, err := c.runWithInput(t, 2*time.Minute, install, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of mesh install's output: %v", err)
	}
	t.Cleanup(func() { // the cluster-scoped RBAC and webhook outlive the namespace; the CRDs are shared
		_, _ = c.runWithInput(t, 2*time.Minute, withoutCRDs(install), "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	})
	if _, err := c.run(t, 4*time.Minute, "-n", controlPlane, "wait", "--for=condition=Available", "deployment", "--all", "--timeout=210s"); err != nil {
		t.Fatalf("the control plane did not become available: %v\n%s", err, c.describe(t, controlPlane))
	}
	return controlPlane
}

// testCA is a CA made by the test, as an operator's would sign the gateway's certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lightmesh e2e gateway CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(2 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a certificate for host signed by the CA (serial number serial), and its key,
// in PEM.
func (ca *testCA) issue(t *testing.T, serial int64, host string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(2 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// secret returns a kubernetes.io/tls Secret with a certificate for host, serial number
// serial; with withCA, also the CA as ca.crt (for a MUTUAL server).
func (ca *testCA) secret(t *testing.T, name string, serial int64, host string, withCA bool) string {
	t.Helper()
	cert, key := ca.issue(t, serial, host, x509.ExtKeyUsageServerAuth)
	b64 := base64.StdEncoding.EncodeToString
	out := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: %s
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
`, name, b64(cert), b64(key))
	if withCA {
		out += "  ca.crt: " + b64(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})) + "\n"
	}
	return out
}

// The gateway's HTTPS Gateway servers, end to end: with `mesh install --ingress`, a TLS
// Secret in the gateway's namespace (signed by a CA the test makes) and a Gateway whose HTTPS
// server names it, a client outside the cluster reaches the ingress NodePort with SNI and
// the CA, and its request is routed by the VirtualService bound to the Gateway into the mesh
// (the echo server answers with its pod name). A host whose Secret is missing gets no
// certificate (the handshake fails), the Gateway's status names the Secret and `mesh check`
// lists it; a MUTUAL server requires a client certificate signed by its Secret's ca.crt; the
// HTTP server redirects to https; a rotated Secret is served without restarting anything.
func TestGatewayHTTPS(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)
	controlPlane := installControlPlane(t, c, mesh, "e2e-gwtls-cp", "--ingress")

	app := c.namespace(t, "e2e-gwtls-app")
	injected := runMeshInput(t, mesh, fmt.Sprintf(meshedAppManifests, testImage("e2e-echo")), "--kubeconfig", c.kubeconfig, "inject", "--control-plane-namespace", controlPlane, "-")
	c.apply(t, app, injected)
	if _, err := c.run(t, 3*time.Minute, "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed echo deployment did not become ready: %v\n%s", err, c.describe(t, app))
	}
	echoPods := strings.Fields(c.must(t, "-n", app, "get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].metadata.name}"))

	const host, missingHost, mutualHost = "shop.gwtls.example", "missing.gwtls.example", "mutual.gwtls.example"
	ca := newTestCA(t)
	c.apply(t, controlPlane, ca.secret(t, "shop-cert", 100, host, false))
	c.apply(t, controlPlane, ca.secret(t, "mutual-cert", 200, mutualHost, true))
	c.apply(t, app, fmt.Sprintf(`apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: shop-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [%[1]s]
    tls: {mode: SIMPLE, credentialName: shop-cert}
  - port: {number: 443, name: https-missing, protocol: HTTPS}
    hosts: [%[2]s]
    tls: {mode: SIMPLE, credentialName: missing-cert}
  - port: {number: 443, name: https-mutual, protocol: HTTPS}
    hosts: [%[3]s]
    tls: {mode: MUTUAL, credentialName: mutual-cert}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [%[1]s]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: [%[1]s, %[2]s, %[3]s]
  gateways: [shop-gateway]
  http:
  - match: [{uri: {prefix: /}}]
    route:
    - destination: {host: echo, port: {number: 80}}
`, host, missingHost, mutualHost))

	nodeIP := strings.TrimSpace(c.must(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`))
	port := func(name string) string {
		return strings.TrimSpace(c.must(t, "-n", controlPlane, "get", "service", "lightmesh-ingress", "-o", fmt.Sprintf(`jsonpath={.spec.ports[?(@.name=="%s")].nodePort}`, name)))
	}
	httpsAddr, httpAddr := net.JoinHostPort(nodeIP, port("https")), net.JoinHostPort(nodeIP, port("http"))

	// get sends GET / to the ingress's HTTPS NodePort with SNI sni, trusting only the test's
	// CA, on a new connection; it returns the status, the body and the serial number of the
	// certificate the gateway presented.
	get := func(sni string, clientCert ...tls.Certificate) (int, string, int64, error) {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{ServerName: sni, RootCAs: ca.pool, MinVersion: tls.VersionTLS12, Certificates: clientCert},
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, httpsAddr)
			},
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + sni + "/api/users/1")
		if err != nil {
			return 0, "", 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, strings.TrimSpace(string(body)), resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	routed := func(body string) bool {
		for _, p := range echoPods {
			if body == p {
				return true
			}
		}
		return false
	}
	// The gateway learns the Gateway and the Secret from the controller: poll until it serves.
	eventually(t, 3*time.Minute, "the ingress gateway to serve https://"+host+" with the Secret's certificate", func() (bool, string) {
		code, body, serial, err := get(host)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK && routed(body) && serial == 100, fmt.Sprintf("%d %q serial %d", code, body, serial)
	})

	// MUTUAL: a client certificate signed by the Secret's ca.crt is required.
	clientPEM, clientKey := ca.issue(t, 300, "client.gwtls.example", x509.ExtKeyUsageClientAuth)
	clientCert, err := tls.X509KeyPair(clientPEM, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the MUTUAL server to accept the client certificate", func() (bool, string) {
		code, body, serial, err := get(mutualHost, clientCert)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK && routed(body) && serial == 200, fmt.Sprintf("%d %q serial %d", code, body, serial)
	})
	if code, _, _, err := get(mutualHost); err == nil {
		t.Errorf("the MUTUAL server answered %d to a client without a certificate", code)
	}

	// missing-cert does not exist: no certificate for its host, and the Gateway says which.
	if code, body, _, err := get(missingHost); err == nil {
		t.Errorf("https://%s completed a handshake though its Secret is missing: %d %q", missingHost, code, body)
	}
	eventually(t, time.Minute, "the Gateway's status to name the missing Secret", func() (bool, string) {
		out, err := c.run(t, 30*time.Second, "-n", app, "get", "gateways.networking.istio.io", "shop-gateway", "-o",
			`jsonpath={.status.conditions[?(@.type=="ResolvedRefs")].status} {.status.conditions[?(@.type=="ResolvedRefs")].message}`)
		if err != nil {
			return false, err.Error()
		}
		return strings.HasPrefix(out, "False ") && strings.Contains(out, "secret "+controlPlane+"/missing-cert does not exist"), out
	})

	// mesh check lists it (policy category; a warning).
	out, _ := runMeshStatus(t, mesh, "--kubeconfig", c.kubeconfig, "check", "--control-plane-namespace", controlPlane)
	if !strings.Contains(out, "Gateway "+app+"/shop-gateway: InvalidCertificateRef") || !strings.Contains(out, "missing-cert does not exist") {
		t.Errorf("mesh check does not list the Gateway's missing Secret:\n%s", out)
	}

	// The HTTP server redirects to https.
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/users/1?x=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatalf("http://%s through the ingress: %v", host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://"+host+"/api/users/1?x=1" {
		t.Errorf("http://%s: %d Location %q, want 301 to https", host, resp.StatusCode, resp.Header.Get("Location"))
	}

	// Rotation: a new certificate in the Secret is served, with no restart.
	c.apply(t, controlPlane, ca.secret(t, "shop-cert", 101, host, false))
	eventually(t, 2*time.Minute, "the gateway to serve the rotated certificate", func() (bool, string) {
		code, body, serial, err := get(host)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK && routed(body) && serial == 101, fmt.Sprintf("%d %q serial %d", code, body, serial)
	})
	if restarts := c.must(t, "-n", controlPlane, "get", "pods", "-l", "app=lightmesh-ingress", "-o", "jsonpath={.items[*].status.containerStatuses[*].restartCount}"); strings.Trim(restarts, "0 ") != "" {
		t.Errorf("the ingress gateway restarted (%s): the rotation should reach it live", restarts)
	}
}
