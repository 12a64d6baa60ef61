package cmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/kubernetes/scheme"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

func TestIdentityOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*identityOptions)
		want   string
	}{
		{"defaults", func(*identityOptions) {}, ""},
		{"empty addr", func(o *identityOptions) { o.addr = "" }, "--addr and --admin-addr"},
		{"empty issuer dir", func(o *identityOptions) { o.issuerDir = "" }, "--issuer-dir is empty"},
		{"bad trust domain", func(o *identityOptions) { o.trustDomain = "Bad" }, "--trust-domain"},
		{"short lifetime", func(o *identityOptions) { o.leafLifetime = time.Second }, "--leaf-lifetime 1s is too short"},
		{"skew", func(o *identityOptions) { o.clockSkew = 48 * time.Hour }, "--clock-skew"},
		{"reload interval", func(o *identityOptions) { o.reloadInterval = time.Millisecond }, "--reload-interval"},
		{"empty audience", func(o *identityOptions) { o.tokenAudience = "" }, "--token-audience"},
		{"log level", func(o *identityOptions) { o.logLevel = "loud" }, "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := newIdentityOptions()
			tt.mutate(opts)
			err := opts.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestIdentityCommandFlags(t *testing.T) {
	root := NewRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"identity", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--addr", "--admin-addr", "--trust-domain", "--trust-anchors-file", "--issuer-dir",
		"--leaf-lifetime", "--clock-skew", "--token-audience", "--kubeconfig", "--serving-name", "--reload-interval"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("identity --help does not list %s", flag)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the service's logging and the test's reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeAPIServer answers TokenReviews: "token-a" is ServiceAccount ns1/a for any audience
// asked; anything else is not authenticated.
func fakeAPIServer(t *testing.T) string {
	t.Helper()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// client-go sends protobuf or JSON; the answer is JSON, which it accepts too.
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
		review, ok := obj.(*authnv1.TokenReview)
		if err != nil || !ok {
			t.Logf("fake API server: content type %q: %v", r.Header.Get("Content-Type"), err)
			http.Error(w, "not a TokenReview", http.StatusBadRequest)
			return
		}
		review.APIVersion, review.Kind = "authentication.k8s.io/v1", "TokenReview"
		if review.Spec.Token == "token-a" {
			review.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:ns1:a"}, Audiences: review.Spec.Audiences}
		} else {
			review.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	}))
	t.Cleanup(server.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: admin}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, server.URL)
	if err := os.WriteFile(kubeconfig, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// The command end to end, with a fake API server: it serves Certify over TLS, /ready and
// /metrics, and stops when its context ends.
func TestRunIdentity(t *testing.T) {
	anchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := meshid.GenerateIssuer(anchor, meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPEM, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": issuer.CertificatePEM(), "tls.key": keyPEM, "ca.crt": anchor.CertificatePEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts := newIdentityOptions()
	opts.addr, opts.adminAddr = "127.0.0.1:0", "127.0.0.1:0"
	opts.issuerDir = dir
	opts.kubeconfig = fakeAPIServer(t)
	if err := opts.validate(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "")
	t.Setenv("POD_NAMESPACE", "")

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runIdentity(ctx, io.Discard, &logs, opts) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runIdentity = %v, want nil after its context ended", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("runIdentity did not return within 15s of its context ending")
		}
	}()

	grpcAddr := waitForLog(t, &logs, done, `msg="identity service listening" .*?addr=(\S+)`)
	adminAddr := waitForLog(t, &logs, done, `msg="admin server listening" .*?addr=(\S+)`)

	resp, err := http.Get("http://" + adminAddr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/ready = %d, want 200", resp.StatusCode)
	}

	pool := x509.NewCertPool()
	pool.AddCert(anchor.Certificate)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "identity.lightmesh.svc.cluster.local"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := identityv1.NewIdentityClient(conn)
	key, err := meshid.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id := meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: "ns1", ServiceAccount: "a"}
	csr, err := meshid.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	callCtx, callCancel := context.WithTimeout(ctx, 10*time.Second)
	defer callCancel()
	got, err := client.Certify(callCtx, &identityv1.CertifyRequest{Identity: id.String(), Token: []byte("token-a"), CertificateSigningRequest: csr})
	if err != nil {
		t.Fatalf("Certify: %v\nlogs:\n%s", err, logs.String())
	}
	leaf, err := x509.ParseCertificate(got.GetLeafCertificate())
	if err != nil || len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		t.Fatalf("leaf %v (%v), want a certificate for %s", leaf, err, id)
	}
	_, err = client.Certify(callCtx, &identityv1.CertifyRequest{Identity: id.String(), Token: []byte("forged"), CertificateSigningRequest: csr})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Certify with a forged token = %v, want PermissionDenied", err)
	}

	resp, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"issuer_cert_ttl_seconds ", `identity_certify_requests_total{code="OK"} 1`, `identity_certify_requests_total{code="PermissionDenied"} 1`, "go_goroutines"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func waitForLog(t *testing.T, logs *syncBuffer, done <-chan error, pattern string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("runIdentity returned %v before logging %q\nlogs:\n%s", err, pattern, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within 15s\nlogs:\n%s", pattern, logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
}
