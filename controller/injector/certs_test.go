package injector

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/install"
)

func writePair(t *testing.T, dir string, w install.WebhookTLS) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), w.CertificatePEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), w.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateFilesReload(t *testing.T) {
	id, err := install.LoadIdentity("../../install/testdata/identity/ca.crt", "../../install/testdata/identity/issuer.crt", "../../install/testdata/identity/issuer.key", nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := install.WebhookCertificate(id, "one", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	second, err := install.WebhookCertificate(id, "two", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	files := &CertificateFiles{Dir: dir, Interval: 30 * time.Second, Now: func() time.Time { return now }, Logger: discardLogger()}
	if err := files.Load(); err == nil {
		t.Fatal("Load of an empty directory succeeded")
	}
	writePair(t, dir, first)
	if err := files.Load(); err != nil {
		t.Fatal(err)
	}
	leafName := func() string {
		cert, err := files.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cert.Leaf.DNSNames[0]
	}
	if got := leafName(); got != "webhook.one.svc" {
		t.Fatalf("serving %s", got)
	}
	writePair(t, dir, second)
	if got := leafName(); got != "webhook.one.svc" {
		t.Errorf("serving %s before the interval passed, want the first certificate", got)
	}
	now = now.Add(31 * time.Second)
	if got := leafName(); got != "webhook.two.svc" {
		t.Errorf("serving %s after the interval, want the renewed certificate", got)
	}
	// A broken renewal keeps the certificate in use.
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), bytes.Repeat([]byte("x"), 10), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if got := leafName(); got != "webhook.two.svc" {
		t.Errorf("serving %s after a broken renewal, want the one in use", got)
	}
}
