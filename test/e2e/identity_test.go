//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meshid "github.com/lightmesh/lightmesh/internal/identity"
	proxyidentity "github.com/lightmesh/lightmesh/proxy/identity"
)

// The identity service, run as a local process against the real cluster's TokenReview API:
// a token of A gets a certificate for exactly A; a token of B asking for A, a token for
// another audience, the token of a deleted ServiceAccount and a token bound to a deleted Pod
// are refused; the issuer is rotated under a loop of requests without any of them failing,
// and a bad new issuer is kept out and reported as an Event on the controller's Pod.
func TestIdentityService(t *testing.T) {
	c := localCluster(t)
	bin := buildController(t)
	ns := c.namespace(t, "e2e-identity")
	for _, sa := range []string{"a", "b", "gone", "podbound"} {
		c.must(t, "-n", ns, "create", "serviceaccount", sa)
	}

	clock := meshid.SystemClock{}
	anchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := meshid.GenerateIssuer(anchor, meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	anchorsFile := filepath.Join(dir, "trust-anchors.pem")
	if err := os.WriteFile(anchorsFile, anchor.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	issuers := newIssuerDir(t, filepath.Join(dir, "issuer"), issuer)
	const podName = "mesh-controller-e2e"
	p := startIdentity(t, bin, []string{"POD_NAME=" + podName, "POD_NAMESPACE=" + ns},
		"--kubeconfig", c.kubeconfig, "--issuer-dir", issuers.dir, "--trust-anchors-file", anchorsFile,
		"--reload-interval", "1s")
	client := p.dial(t, anchor.Certificate)
	ctx := context.Background()
	verifier, err := meshid.NewVerifier([]*x509.Certificate{anchor.Certificate}, "", clock)
	if err != nil {
		t.Fatal(err)
	}
	id := func(sa string) meshid.SpiffeID {
		return meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
	}
	tokenA := c.token(t, ns, "a", "--audience", identityAudience)

	t.Run("token of A gets a certificate for exactly A through the proxy's client", func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(tokenA), 0o600); err != nil {
			t.Fatal(err)
		}
		proxy, err := proxyidentity.NewClient(proxyidentity.Options{
			Addr: p.addr, Identity: id("a"), TokenFile: tokenFile,
			TrustAnchors: []*x509.Certificate{anchor.Certificate},
			Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- proxy.Run(runCtx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("the proxy's client Run = %v, want nil after its context ended", err)
			}
		}()
		eventually(t, 30*time.Second, "the proxy's client to be ready", func() (bool, string) { return proxy.Ready(), "not ready" })
		cert := proxy.Certificate()
		chain := []*x509.Certificate{cert.Leaf}
		for _, der := range cert.Certificate[1:] {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, c)
		}
		if err := verifier.VerifyIdentity(chain, x509.ExtKeyUsageClientAuth, id("a")); err != nil {
			t.Fatal(err)
		}
		if len(cert.Leaf.URIs) != 1 || len(cert.Leaf.DNSNames) != 0 {
			t.Errorf("the certificate names %v and DNS %v, want exactly %s", cert.Leaf.URIs, cert.Leaf.DNSNames, id("a"))
		}
		if life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); life != 24*time.Hour+time.Minute {
			t.Errorf("the certificate lives %s, want 24h and 1m of clock skew", life)
		}
	})

	refused := func(t *testing.T, sa, token string, code codes.Code, message string) {
		t.Helper()
		_, err := certify(ctx, client, id(sa), token)
		st := status.Convert(err)
		if st.Code() != code || !strings.Contains(st.Message(), message) {
			t.Fatalf("Certify for %s = %v (%q), want %s containing %q", sa, st.Code(), st.Message(), code, message)
		}
	}

	t.Run("token of B asking for A is refused", func(t *testing.T) {
		tokenB := c.token(t, ns, "b", "--audience", identityAudience)
		refused(t, "a", tokenB, codes.PermissionDenied, "the token is of ServiceAccount "+ns+"/b")
		if _, err := certify(ctx, client, id("b"), tokenB); err != nil {
			t.Fatalf("B's own certificate: %v", err)
		}
	})

	t.Run("token for another audience is refused", func(t *testing.T) {
		other := c.token(t, ns, "a", "--audience", "api")
		refused(t, "a", other, codes.PermissionDenied, "token check failed: the token is not valid for audience")
		refused(t, "a", "not-a-token", codes.PermissionDenied, "token check failed")
	})

	t.Run("token of a deleted ServiceAccount is refused", func(t *testing.T) {
		token := c.token(t, ns, "gone", "--audience", identityAudience)
		if _, err := certify(ctx, client, id("gone"), token); err != nil {
			t.Fatalf("before the deletion: %v", err)
		}
		c.must(t, "-n", ns, "delete", "serviceaccount", "gone", "--wait=true")
		var last error
		eventually(t, 60*time.Second, "the deleted ServiceAccount's token to be refused", func() (bool, string) {
			_, last = certify(ctx, client, id("gone"), token)
			return status.Code(last) == codes.PermissionDenied, "Certify: " + errString(last)
		})
		if !strings.Contains(last.Error(), "token check failed") {
			t.Errorf("refusal %q does not say the token check failed", last)
		}
	})

	t.Run("token bound to a deleted Pod is refused", func(t *testing.T) {
		c.apply(t, ns, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bound"},"spec":{"serviceAccountName":"podbound",`+
			`"restartPolicy":"Never","containers":[{"name":"c","image":"`+testImage("mesh-proxy")+`","imagePullPolicy":"Never","args":["version"]}]}}`)
		token := c.token(t, ns, "podbound", "--audience", identityAudience, "--bound-object-kind", "Pod", "--bound-object-name", "bound")
		if _, err := certify(ctx, client, id("podbound"), token); err != nil {
			t.Fatalf("while the Pod exists: %v", err)
		}
		c.must(t, "-n", ns, "delete", "pod", "bound", "--grace-period=0", "--force", "--wait=true")
		eventually(t, 60*time.Second, "the deleted Pod's token to be refused", func() (bool, string) {
			_, err := certify(ctx, client, id("podbound"), token)
			return status.Code(err) == codes.PermissionDenied, "Certify: " + errString(err)
		})
	})

	t.Run("issuer rotation under load", func(t *testing.T) {
		// A loop of Certify calls, bounded in time and count, records every answer.
		type answer struct {
			issuer *x509.Certificate
			err    error
		}
		var mu sync.Mutex
		var answers []answer
		loopCtx, stop := context.WithTimeout(ctx, 3*time.Minute)
		defer stop()
		loopDone := make(chan struct{})
		go func() {
			defer close(loopDone)
			for i := 0; i < 5000 && loopCtx.Err() == nil; i++ {
				chain, err := certify(loopCtx, client, id("a"), tokenA)
				if loopCtx.Err() != nil {
					return
				}
				a := answer{err: err}
				if err == nil {
					if verr := verifier.VerifyIdentity(chain, x509.ExtKeyUsageClientAuth, id("a")); verr != nil {
						a.err = verr
					} else if len(chain) > 1 {
						a.issuer = chain[1]
						if err := chain[0].CheckSignatureFrom(chain[1]); err != nil {
							a.err = err
						}
					}
				}
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
				select {
				case <-loopCtx.Done():
				case <-time.After(50 * time.Millisecond): // pace of the load loop
				}
			}
		}()
		answered := func() int { mu.Lock(); defer mu.Unlock(); return len(answers) }
		eventually(t, 30*time.Second, "the first answers of the loop", func() (bool, string) { return answered() >= 5, "few answers" })

		// A bad issuer, signed by another trust anchor: kept out and reported.
		stranger, err := meshid.GenerateTrustAnchor(meshid.CAOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bad, err := meshid.GenerateIssuer(stranger, meshid.CAOptions{})
		if err != nil {
			t.Fatal(err)
		}
		issuers.write(t, bad)
		eventually(t, 60*time.Second, "an IssuerRejected event on the controller's Pod", func() (bool, string) {
			out, err := c.run(t, 20*time.Second, "-n", ns, "get", "events",
				"--field-selector", "reason=IssuerRejected,involvedObject.name="+podName, "-o", "jsonpath={.items[*].message}")
			return err == nil && strings.Contains(out, "does not chain to the trust anchors"), "events: " + out + errString(err)
		})
		seen := answered()
		eventually(t, 30*time.Second, "more answers after the bad issuer", func() (bool, string) { return answered() >= seen+5, "few answers" })

		// A good new issuer: taken within a few polls.
		next, err := meshid.GenerateIssuer(anchor, meshid.CAOptions{CommonName: "next.identity.lightmesh.cluster.local"})
		if err != nil {
			t.Fatal(err)
		}
		issuers.write(t, next)
		eventually(t, 60*time.Second, "leaves signed by the new issuer", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, a := range answers {
				if a.issuer != nil && a.issuer.Equal(next.Certificate) {
					n++
				}
			}
			return n >= 5, "answers so far: " + strconv.Itoa(len(answers))
		})
		stop()
		<-loopDone

		mu.Lock()
		defer mu.Unlock()
		switched := false
		for i, a := range answers {
			if a.err != nil {
				t.Errorf("request %d of %d failed during the rotation: %v", i+1, len(answers), a.err)
				continue
			}
			switch {
			case a.issuer.Equal(next.Certificate):
				switched = true
			case a.issuer.Equal(issuer.Certificate):
				if switched {
					t.Errorf("request %d was signed by the old issuer after the new one was taken", i+1)
				}
			default:
				t.Errorf("request %d was signed by %s, neither the old nor the new issuer", i+1, a.issuer.Subject)
			}
		}
		t.Logf("%d requests during the rotation, none failed", len(answers))

		code, metrics := p.admin(t, "/metrics")
		if code != 200 || !strings.Contains(metrics, "issuer_cert_ttl_seconds ") || !strings.Contains(metrics, `identity_issuer_reloads_total{result="rejected"} 1`) {
			t.Errorf("/metrics (%d) lacks issuer_cert_ttl_seconds or the rejected reload:\n%s", code, grepLines(metrics, "issuer"))
		}
		out, err := c.run(t, 20*time.Second, "-n", ns, "get", "events", "--field-selector", "reason=IssuerUpdated,involvedObject.name="+podName, "-o", "name")
		if err != nil || strings.TrimSpace(out) == "" {
			t.Errorf("no IssuerUpdated event on the controller's Pod: %q %v", out, err)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func grepLines(text, word string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, word) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
