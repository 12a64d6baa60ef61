package install

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

var writeIdentityFixtures = flag.Bool("identity-fixtures", false, "regenerate testdata/identity (trust anchor and issuer valid 100 years) and the copy in internal/inject/testdata")

// The golden tests need certificate files that stay valid: this writes a trust anchor and
// an issuer valid for 100 years. Run it only to replace them:
//
//	go test ./install -run TestGenerateIdentityFixtures -identity-fixtures
func TestGenerateIdentityFixtures(t *testing.T) {
	if !*writeIdentityFixtures {
		t.Skip("run with -identity-fixtures to regenerate testdata/identity")
	}
	const century = 100 * 365 * 24 * time.Hour
	anchor, err := identity.GenerateTrustAnchor(identity.CAOptions{Lifetime: century})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := identity.GenerateIssuer(anchor, identity.CAOptions{Lifetime: century})
	if err != nil {
		t.Fatal(err)
	}
	key, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"testdata/identity/ca.crt":                    anchor.CertificatePEM(),
		"testdata/identity/issuer.crt":                issuer.CertificatePEM(),
		"testdata/identity/issuer.key":                key,
		"../internal/inject/testdata/identity/ca.crt": anchor.CertificatePEM(),
	}
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", name)
	}
}
