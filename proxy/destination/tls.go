package destination

import (
	"crypto/tls"
	"crypto/x509"
)

func x509Pool(cs tls.ConnectionState) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		pool.AddCert(c)
	}
	return pool
}

func x509VerifyOptions(roots, intermediates *x509.CertPool, name string) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: name,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
}
