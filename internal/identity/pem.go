package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// minRSABits is the smallest RSA key this package accepts.
const minRSABits = 2048

var (
	// ErrNoPEMBlock means the data held no (well-formed) PEM block of the expected kind.
	ErrNoPEMBlock = errors.New("no PEM block found")
	// ErrWeakKey means a private key is too weak or of a kind this package does not sign with.
	ErrWeakKey = errors.New("unsupported or weak key")
)

// EncodeCertificatesPEM returns certs as consecutive PEM "CERTIFICATE" blocks, in order
// (for a chain: the leaf or issuer first, then the certificates that signed it).
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, cert := range certs {
		// Writing to a bytes.Buffer does not fail.
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	return buf.Bytes()
}

// DecodeCertificatesPEM parses every PEM "CERTIFICATE" block of data, in order. Text between
// blocks is ignored; any other block type, or a malformed block, is an error.
func DecodeCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("found a PEM %q block where certificates were expected: give the certificate file, with only -----BEGIN CERTIFICATE----- blocks", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: a PEM block after certificate %d is malformed; check the file was copied whole", ErrNoPEMBlock, len(certs))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: expected PEM certificates (-----BEGIN CERTIFICATE-----); check the file is a PEM certificate and not a key or DER", ErrNoPEMBlock)
	}
	return certs, nil
}

// EncodePrivateKeyPEM returns key as a PKCS#8 PEM "PRIVATE KEY" block.
func EncodePrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// DecodePrivateKeyPEM parses the first private key of data: a PKCS#8 "PRIVATE KEY", a SEC 1
// "EC PRIVATE KEY" or a PKCS#1 "RSA PRIVATE KEY" block ("EC PARAMETERS" blocks are skipped).
// It rejects RSA keys below 2048 bits, elliptic curves other than P-256, P-384 and P-521,
// and encrypted keys.
func DecodePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: expected a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----); check the file is the key and not the certificate", ErrNoPEMBlock)
		}
		var key any
		var err error
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted: decrypt it first, for example with `openssl pkey -in key.pem -out key-plain.pem`")
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("unsupported PEM %q block: convert the key to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`", block.Type)
			}
			return nil, fmt.Errorf("found a PEM %q block where a private key was expected: give the key file", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", strings.ToLower(block.Type), err)
		}
		return checkSigningKey(key)
	}
}

// checkSigningKey returns key as a crypto.Signer when it is strong enough to sign certificates.
func checkSigningKey(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("%w: the RSA key has %d bits; use at least %d, or better an ECDSA P-256 key", ErrWeakKey, bits, minRSABits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("%w: the ECDSA key is on curve %s; use P-256, P-384 or P-521", ErrWeakKey, k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%w: a %T cannot sign certificates; use an ECDSA P-256 key", ErrWeakKey, key)
	}
}
