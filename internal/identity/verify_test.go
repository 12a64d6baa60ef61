package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"
)

func TestVerifyAcceptsIssuedLeaves(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/microservices/sa/order-service")
	leaf, err := pki.issuer.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf, pki.issuer.Certificate}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		got, err := pki.verifier.Verify(chain, usage)
		if err != nil || got != id {
			t.Errorf("Verify(usage %d) = %v, %v; want %v", usage, got, err, id)
		}
	}
	if got, err := pki.verifier.VerifyRaw([][]byte{leaf.Raw, pki.issuer.Certificate.Raw}, x509.ExtKeyUsageServerAuth); err != nil || got != id {
		t.Errorf("VerifyRaw = %v, %v; want %v", got, err, id)
	}
	if err := pki.verifier.VerifyIdentity(chain, x509.ExtKeyUsageServerAuth, id); err != nil {
		t.Errorf("VerifyIdentity with the right identity: %v", err)
	}
	// Valid from NotBefore to NotAfter inclusive.
	pki.clock.Set(leaf.NotBefore)
	if _, err := pki.verifier.Verify(chain, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("at NotBefore: %v", err)
	}
	pki.clock.Set(leaf.NotAfter)
	if _, err := pki.verifier.Verify(chain, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("at NotAfter: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	pki := newTestPKI(t)
	other := newTestPKI(t) // another mesh: another trust root
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	otherDomain := mustSpiffeID(t, "spiffe://example.org/ns/default/sa/web")
	now := pki.clock.Now()

	// leaf builds a certificate with x509.CreateCertificate from the template Sign uses,
	// changed by edit, signed by our issuer unless signer is given.
	leaf := func(edit func(*x509.Certificate), signer *Issuer) []*x509.Certificate {
		template := goodLeafTemplate(id, now)
		if edit != nil {
			edit(template)
		}
		if signer == nil {
			signer = pki.issuer
		}
		cert, _ := createCertificate(t, template, signer.Certificate, signer.Key)
		return []*x509.Certificate{cert, signer.Certificate}
	}

	cases := []struct {
		name  string
		chain []*x509.Certificate
		usage x509.ExtKeyUsage
		clock time.Duration // moves the verifier's clock from now
		want  error         // nil: the control case, accepted
	}{
		{"control: the template as is", leaf(nil, nil), x509.ExtKeyUsageServerAuth, 0, nil},
		{"two URI SANs", leaf(func(c *x509.Certificate) {
			c.URIs = append(c.URIs, mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/admin").URL())
		}, nil), x509.ExtKeyUsageServerAuth, 0, ErrMultipleURISANs},
		{"identity only in a DNS SAN", leaf(func(c *x509.Certificate) {
			c.URIs, c.DNSNames = nil, []string{id.String()}
		}, nil), x509.ExtKeyUsageServerAuth, 0, ErrNoURISAN},
		{"URI SAN not a SPIFFE ID", leaf(func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "https", Host: "web.default.svc"}}
		}, nil), x509.ExtKeyUsageServerAuth, 0, ErrInvalidSpiffeID},
		{"CA=true", leaf(func(c *x509.Certificate) { c.IsCA = true }, nil), x509.ExtKeyUsageServerAuth, 0, ErrLeafIsCA},
		{"keyCertSign", leaf(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, nil), x509.ExtKeyUsageServerAuth, 0, ErrLeafCanSign},
		{"cRLSign", leaf(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign }, nil), x509.ExtKeyUsageServerAuth, 0, ErrLeafCanSign},
		{"no digitalSignature", leaf(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }, nil), x509.ExtKeyUsageServerAuth, 0, ErrLeafKeyUsage},
		{"server without serverAuth", leaf(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}, nil), x509.ExtKeyUsageServerAuth, 0, ErrMissingExtKeyUsage},
		{"client without clientAuth", leaf(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, nil), x509.ExtKeyUsageClientAuth, 0, ErrMissingExtKeyUsage},
		{"no extended key usage", leaf(func(c *x509.Certificate) { c.ExtKeyUsage = nil }, nil), x509.ExtKeyUsageClientAuth, 0, ErrMissingExtKeyUsage},
		{"expired", leaf(nil, nil), x509.ExtKeyUsageServerAuth, 24*time.Hour + time.Second, ErrExpired},
		{"not yet valid", leaf(nil, nil), x509.ExtKeyUsageServerAuth, -time.Minute - time.Second, ErrNotYetValid},
		{"expired intermediate", leaf(func(c *x509.Certificate) { c.NotAfter = now.Add(2 * 365 * 24 * time.Hour) }, nil), x509.ExtKeyUsageServerAuth, 366 * 24 * time.Hour, ErrExpired},
		{"another trust root", leaf(nil, other.issuer), x509.ExtKeyUsageServerAuth, 0, ErrUntrusted},
		{"intermediate missing", leaf(nil, nil)[:1], x509.ExtKeyUsageServerAuth, 0, ErrUntrusted},
		{"self-signed leaf", func() []*x509.Certificate {
			cert, _ := createCertificate(t, goodLeafTemplate(id, now), nil, nil)
			return []*x509.Certificate{cert}
		}(), x509.ExtKeyUsageServerAuth, 0, ErrUntrusted},
		{"wrong trust domain", leaf(func(c *x509.Certificate) { c.URIs = []*url.URL{otherDomain.URL()} }, nil), x509.ExtKeyUsageServerAuth, 0, ErrWrongTrustDomain},
		{"no certificate", nil, x509.ExtKeyUsageServerAuth, 0, ErrNoPeerCertificate},
	}
	all := []error{ErrNoPeerCertificate, ErrNoURISAN, ErrMultipleURISANs, ErrInvalidSpiffeID, ErrLeafIsCA, ErrLeafCanSign,
		ErrLeafKeyUsage, ErrMissingExtKeyUsage, ErrExpired, ErrNotYetValid, ErrUntrusted, ErrWrongTrustDomain}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pki.clock.Set(now.Add(c.clock))
			got, err := pki.verifier.Verify(c.chain, c.usage)
			if c.want == nil {
				if err != nil || got != id {
					t.Fatalf("Verify = %v, %v; want %v", got, err, id)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted it as %v", got)
			}
			for _, sentinel := range all {
				if is := errors.Is(err, sentinel); is != (sentinel == c.want) { //nolint:errorlint // compares two sentinels, not a returned error
					t.Errorf("err = %v; wraps %v: %v, want %v", err, sentinel, is, !is)
				}
			}
		})
	}
}

func TestVerifyIdentityMismatch(t *testing.T) {
	pki := newTestPKI(t)
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	leaf, err := pki.issuer.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/admin")
	err = pki.verifier.VerifyIdentity([]*x509.Certificate{leaf, pki.issuer.Certificate}, x509.ExtKeyUsageServerAuth, want)
	if !errors.Is(err, ErrIdentityMismatch) {
		t.Errorf("err = %v, want ErrIdentityMismatch", err)
	}
	if _, err := pki.verifier.Verify([]*x509.Certificate{leaf}, x509.ExtKeyUsageAny); err == nil {
		t.Error("Verify accepted a usage other than serverAuth and clientAuth")
	}
}

func TestNewVerifier(t *testing.T) {
	pki := newTestPKI(t)
	anchors := []*x509.Certificate{pki.anchor.Certificate}
	if _, err := NewVerifier(nil, "", nil); err == nil {
		t.Error("NewVerifier accepted no anchors")
	}
	if _, err := NewVerifier(anchors, "Example.org", nil); !errors.Is(err, ErrInvalidSpiffeID) {
		t.Errorf("upper-case trust domain: err = %v", err)
	}
	// A verifier of another trust domain refuses cluster.local identities.
	verifier, err := NewVerifier(anchors, "example.org", pki.clock)
	if err != nil {
		t.Fatal(err)
	}
	id := mustSpiffeID(t, "spiffe://cluster.local/ns/default/sa/web")
	leaf, err := pki.issuer.Sign(mustCSR(t, mustKey(t), id), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifier.Verify([]*x509.Certificate{leaf, pki.issuer.Certificate}, x509.ExtKeyUsageServerAuth); !errors.Is(err, ErrWrongTrustDomain) {
		t.Errorf("err = %v, want ErrWrongTrustDomain", err)
	}
}

// TestMutualTLS runs a TLS 1.3 handshake over an in-memory pipe with the certificates and the
// verification the proxies use: each side checks the other's certificate with VerifyRaw, and
// the client also checks the server is the identity it expected.
func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	serverID := mustSpiffeID(t, "spiffe://cluster.local/ns/microservices/sa/order-service")
	clientID := mustSpiffeID(t, "spiffe://cluster.local/ns/microservices/sa/frontend")
	tlsCertificate := func(id SpiffeID) tls.Certificate {
		key := mustKey(t)
		leaf, err := pki.issuer.Sign(mustCSR(t, key, id), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{leaf.Raw, pki.issuer.Certificate.Raw}, PrivateKey: key, Leaf: leaf}
	}
	serverCert, clientCert := tlsCertificate(serverID), tlsCertificate(clientID)

	for _, c := range []struct {
		name       string
		expectedID SpiffeID
		wantErr    error
	}{
		{"expected server", serverID, nil},
		{"unexpected server", clientID, ErrIdentityMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			var seenClient SpiffeID
			server := &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{serverCert},
				ClientAuth:   tls.RequireAnyClientCert,
				VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
					id, err := pki.verifier.VerifyRaw(rawCerts, x509.ExtKeyUsageClientAuth)
					seenClient = id
					return err
				},
			}
			var verifyErr error
			client := &tls.Config{
				MinVersion:         tls.VersionTLS13,
				Certificates:       []tls.Certificate{clientCert},
				InsecureSkipVerify: true, // VerifyPeerCertificate does the checking
				VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
					id, err := pki.verifier.VerifyRaw(rawCerts, x509.ExtKeyUsageServerAuth)
					if err == nil {
						err = MatchIdentity(id, c.expectedID)
					}
					verifyErr = err
					return err
				},
			}
			clientConn, serverConn := net.Pipe()
			defer clientConn.Close()
			defer serverConn.Close()
			serverDone := make(chan error, 1)
			go func() {
				serverDone <- tls.Server(serverConn, server).HandshakeContext(context.Background())
				serverConn.Close()
			}()
			clientErr := tls.Client(clientConn, client).HandshakeContext(context.Background())
			clientConn.Close()
			serverErr := <-serverDone

			if c.wantErr != nil {
				if clientErr == nil || !errors.Is(verifyErr, c.wantErr) {
					t.Fatalf("client handshake err = %v (verify %v), want %v", clientErr, verifyErr, c.wantErr)
				}
				return
			}
			if clientErr != nil || serverErr != nil {
				t.Fatalf("handshake failed: client %v, server %v", clientErr, serverErr)
			}
			if seenClient != clientID {
				t.Errorf("server saw client %v, want %v", seenClient, clientID)
			}
		})
	}
}
