package standalone

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/lightmesh/lightmesh/proxy/envoy"
)

// upstreamTLS builds the client tls.Config of an UpstreamTlsContext with Envoy's rules: TLS
// 1.2 or later; the SNI only when sni is set; without trusted_ca the server certificate is
// not verified (Envoy's default); with it, the chain must lead to one of its CAs and, when
// match_typed_subject_alt_names is set, one SAN must match one matcher (the host name of
// the endpoint is not checked otherwise, as in Envoy).
func upstreamTLS(clusterName string, tc *envoy.UpstreamTLSContext) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: tc.SNI,
		// Verification is VerifyConnection's: Envoy checks no host name by default.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection, as Envoy does
	}
	ctx := tc.CommonTLSContext
	if ctx == nil {
		return cfg, nil
	}
	cfg.NextProtos = ctx.AlpnProtocols
	if len(ctx.TLSCertificates) > 0 {
		c := ctx.TLSCertificates[0]
		chain, err := c.CertificateChain.Read()
		if err != nil {
			return nil, fmt.Errorf("cluster %s: client certificate: %w", clusterName, err)
		}
		key, err := c.PrivateKey.Read()
		if err != nil {
			return nil, fmt.Errorf("cluster %s: client private key: %w", clusterName, err)
		}
		pair, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: the client certificate and key do not load (PEM chain and matching key needed): %w", clusterName, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	vc := ctx.ValidationContext
	if vc == nil || vc.TrustedCA == nil {
		return cfg, nil
	}
	pem, err := vc.TrustedCA.Read()
	if err != nil {
		return nil, fmt.Errorf("cluster %s: trusted_ca: %w", clusterName, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster %s: trusted_ca holds no PEM certificate", clusterName)
	}
	matchers := vc.MatchTypedSubjectAltNames
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the upstream sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("the upstream certificate is not trusted by trusted_ca: %w", err)
		}
		if len(matchers) == 0 || sanMatches(leaf, matchers) {
			return nil
		}
		return fmt.Errorf("no subject alt name of the upstream certificate (DNS %v, URI %v) matches match_typed_subject_alt_names",
			leaf.DNSNames, leaf.URIs)
	}
	return cfg, nil
}

// sanMatches reports whether one SAN of leaf matches one exact matcher. A DNS SAN
// "*.example.com" matches "a.example.com" (one label), as in Envoy.
func sanMatches(leaf *x509.Certificate, matchers []envoy.SubjectAltNameMatcher) bool {
	for _, m := range matchers {
		if m.Matcher.Exact == nil {
			continue
		}
		want := *m.Matcher.Exact
		switch m.SanType {
		case "DNS":
			for _, san := range leaf.DNSNames {
				if dnsMatch(san, want) {
					return true
				}
			}
		case "URI":
			for _, u := range leaf.URIs {
				if u.String() == want {
					return true
				}
			}
		}
	}
	return false
}

func dnsMatch(san, want string) bool {
	san, want = strings.ToLower(san), strings.ToLower(want)
	if san == want {
		return true
	}
	if rest, ok := strings.CutPrefix(san, "*."); ok {
		_, tail, found := strings.Cut(want, ".")
		return found && tail == rest
	}
	return false
}
