package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	meshpolicy "github.com/lightmesh/lightmesh/internal/policy"
)

const httpsGatewayYAML = `
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: shop-gw
  namespace: shop
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-cert}
`

// selfSigned returns a PEM certificate and key for host.
func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func tlsSecret(namespace, name string, data map[string][]byte) *unstructured.Unstructured {
	encoded := map[string]any{}
	for k, v := range data {
		encoded[k] = base64.StdEncoding.EncodeToString(v)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
		"metadata": map[string]any{"namespace": namespace, "name": name},
		"data":     encoded,
	}}
}

// The credentials of HTTPS Gateway servers come from the Secrets of the gateway's namespace:
// a missing Secret is named in the Gateway's ResolvedRefs condition (which mesh check
// lists), the Secret's creation and its changes are seen without restart, an invalid key
// pair is reported, and a Secret of another namespace is not used.
func TestWatcherGatewayCredentials(t *testing.T) {
	kinds := listKinds()
	kinds[secretsResource] = "SecretList"
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), kinds)
	for _, o := range decodeYAML(t, httpsGatewayYAML) {
		create(t, client, o)
	}
	secrets := client.Resource(secretsResource)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cert, key := selfSigned(t, "shop.example.com")
	// The same name in the Gateway's own namespace is not where Istio looks.
	if _, err := secrets.Namespace("shop").Create(ctx, tlsSecret("shop", "shop-cert", map[string][]byte{"tls.crt": cert, "tls.key": key}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := New(Options{
		Client: client, Discovery: seedDiscovery(), RetryInterval: 20 * time.Millisecond, Coalesce: 5 * time.Millisecond,
		WriteStatus: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), GatewayNamespace: "lightmesh",
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return")
		}
	}()
	e := &env{t: t, ctx: ctx, client: client, watcher: w, changes: make(chan struct{})}
	gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "gateways"}
	resolved := func() map[string]any {
		obj, err := client.Resource(gvr).Namespace("shop").Get(ctx, "shop-gw", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return conditions(t, obj, "status", "conditions")[ConditionResolvedRefs]
	}
	e.eventually("the missing Secret in the Gateway's status", func() bool {
		c := resolved()
		return c != nil && c["status"] == "False" && c["reason"] == ReasonInvalidCertificateRef &&
			strings.Contains(c["message"].(string), "secret lightmesh/shop-cert does not exist")
	})
	if _, err := w.GatewayCredential("lightmesh", "shop-cert", false); err == nil || !strings.Contains(err.Error(), "kubectl create secret tls shop-cert -n lightmesh") {
		t.Errorf("missing Secret: %v", err)
	}
	if _, err := w.GatewayCredential("shop", "shop-cert", false); err == nil {
		t.Error("a Secret outside the gateway's namespace was read")
	}

	if _, err := secrets.Namespace("lightmesh").Create(ctx, tlsSecret("lightmesh", "shop-cert", map[string][]byte{"tls.crt": cert, "tls.key": key}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the Secret to be read", func() bool {
		c, err := w.GatewayCredential("lightmesh", "shop-cert", false)
		return err == nil && c.CertChain == string(cert) && c.PrivateKey == string(key)
	})
	e.eventually("the Gateway's refs resolved", func() bool { c := resolved(); return c != nil && c["status"] == "True" })
	if _, err := w.GatewayCredential("lightmesh", "shop-cert", true); err == nil || !strings.Contains(err.Error(), "shop-cert-cacert") {
		t.Errorf("MUTUAL without a CA: %v", err)
	}
	if _, err := secrets.Namespace("lightmesh").Create(ctx, tlsSecret("lightmesh", "shop-cert-cacert", map[string][]byte{"ca.crt": cert}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the -cacert Secret to be read", func() bool {
		c, err := w.GatewayCredential("lightmesh", "shop-cert", true)
		return err == nil && c.CACert == string(cert)
	})

	// Rotation to a key that does not match the certificate: reported, not served.
	_, otherKey := selfSigned(t, "shop.example.com")
	if _, err := secrets.Namespace("lightmesh").Update(ctx, tlsSecret("lightmesh", "shop-cert", map[string][]byte{"tls.crt": cert, "tls.key": otherKey}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the invalid key pair in the Gateway's status", func() bool {
		c := resolved()
		return c != nil && c["status"] == "False" && strings.Contains(c["message"].(string), "not a valid PEM certificate and key pair")
	})
	var gw *meshpolicy.Gateway
	for i := range w.Model().Gateways {
		gw = &w.Model().Gateways[i]
	}
	if gw == nil || gw.Servers[0].TLS == nil || gw.Servers[0].TLS.CredentialName != "shop-cert" {
		t.Errorf("model gateway %+v", gw)
	}
}
