package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// Identities and names the candidates' certificates carry.
const (
	clientSpiffeID = "spiffe://cluster.local/ns/bench/sa/client"
	serverSpiffeID = "spiffe://cluster.local/ns/bench/sa/server"
	// serverDNSName is the name HAProxy and nginx check on the server side of the hop (they
	// verify DNS names, not SPIFFE IDs).
	serverDNSName = "server.bench.lightmesh"
	clientDNSName = "client.bench.lightmesh"
)

// pki is one trust anchor and issuer, ECDSA P-256, made fresh for every run. Every candidate
// gets leaf certificates from it: the same key type and chain shape (leaf, issuer; anchor
// trusted), so the handshake and record costs compare.
type pki struct {
	anchor *identity.TrustAnchor
	issuer *identity.Issuer
}

func newPKI() (*pki, error) {
	anchor, err := identity.GenerateTrustAnchor(identity.CAOptions{})
	if err != nil {
		return nil, fmt.Errorf("generate trust anchor: %w", err)
	}
	issuer, err := identity.GenerateIssuer(anchor, identity.CAOptions{})
	if err != nil {
		return nil, fmt.Errorf("generate issuer: %w", err)
	}
	return &pki{anchor: anchor, issuer: issuer}, nil
}

// certFiles are the PEM files of one leaf.
type certFiles struct {
	Chain string // leaf then issuer
	Key   string
	CA    string // the trust anchor
	// Combined is chain then key in one file (HAProxy's crt).
	Combined string
}

// writeMeshIdentity writes a mesh workload identity (tls.crt, tls.key, ca.crt) for id into
// dir, issued exactly as the controller issues it (CSR with the SPIFFE ID as the one SAN).
func (p *pki) writeMeshIdentity(dir, id string) (certFiles, error) {
	spiffeID, err := identity.ParseSpiffeID(id)
	if err != nil {
		return certFiles{}, err
	}
	key, err := identity.GenerateKey()
	if err != nil {
		return certFiles{}, err
	}
	der, err := identity.NewCSR(key, spiffeID)
	if err != nil {
		return certFiles{}, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return certFiles{}, err
	}
	leaf, err := p.issuer.Sign(csr, spiffeID, 24*time.Hour)
	if err != nil {
		return certFiles{}, err
	}
	return p.write(dir, "tls", leaf, key)
}

// writeDNSLeaf writes a leaf for a DNS name (for HAProxy and nginx), signed by the same
// issuer, usable as server and client certificate.
func (p *pki) writeDNSLeaf(dir, name string) (certFiles, error) {
	key, err := identity.GenerateKey()
	if err != nil {
		return certFiles{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return certFiles{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.issuer.Certificate, key.Public(), p.issuer.Key)
	if err != nil {
		return certFiles{}, fmt.Errorf("sign %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return certFiles{}, err
	}
	return p.write(dir, name, leaf, key)
}

func (p *pki) write(dir, base string, leaf *x509.Certificate, key crypto.Signer) (certFiles, error) {
	keyPEM, err := identity.EncodePrivateKeyPEM(key)
	if err != nil {
		return certFiles{}, err
	}
	chainPEM := identity.EncodeCertificatesPEM(leaf, p.issuer.Certificate)
	f := certFiles{
		Chain:    filepath.Join(dir, base+".crt"),
		Key:      filepath.Join(dir, base+".key"),
		CA:       filepath.Join(dir, "ca.crt"),
		Combined: filepath.Join(dir, base+".pem"),
	}
	// Readable by anyone: mesh-proxy runs as its own UID; the keys are throwaway.
	for file, data := range map[string][]byte{
		f.Chain:    chainPEM,
		f.Key:      keyPEM,
		f.CA:       p.anchor.CertificatePEM(),
		f.Combined: append(append([]byte{}, chainPEM...), keyPEM...),
	} {
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return certFiles{}, err
		}
	}
	return f, nil
}
