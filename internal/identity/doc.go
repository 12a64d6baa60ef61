// Package identity holds lightmesh's workload identity rules: the SPIFFE IDs that name
// ServiceAccounts, the trust anchor (root) and issuer (intermediate) that `mesh install`
// generates or loads, the issuing of short-lived workload certificates from CSRs (the
// controller's identity service), and the verification of peer certificates (the proxy's mTLS).
//
// A workload's identity is the SPIFFE ID spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>;
// its Istio-style principal is the same string without "spiffe://". A workload certificate is
// an X509-SVID: its one URI SAN is that ID, it is not a CA (basic constraints present, CA=false),
// its only key usage is digitalSignature, and its extended key usages are serverAuth and
// clientAuth. The issuer builds the certificate from the identity it was given, never from
// the CSR's contents: the CSR only has to prove possession of the key and name that identity.
//
// Everything that reads the time takes a Clock, so tests drive it with a FakeClock.
//
// # Defaults
//
//   - Trust domain: "cluster.local" (DefaultTrustDomain), as in Kubernetes and Istio.
//   - Trust anchor: ECDSA P-256, subject CN "root.lightmesh.cluster.local", valid 10 years
//     (DefaultTrustAnchorLifetime), path length 1 (it signs issuers only).
//   - Issuer: ECDSA P-256, subject CN "identity.lightmesh.cluster.local", valid 1 year
//     (DefaultIssuerLifetime, Linkerd's documented choice; rotate it before then) and never
//     beyond its trust anchor, path length 0 (it signs workload certificates only).
//   - Workload certificate: valid 24 hours (DefaultLeafLifetime), never beyond its issuer;
//     proxies renew it at 70 % of its life.
//   - Clock skew allowance: every certificate's NotBefore is set 1 minute in the past
//     (DefaultClockSkewAllowance), so a peer whose clock runs a little behind the
//     controller's accepts a certificate issued just now. Linkerd uses 20 s; one minute
//     covers unsynchronised lab clusters and costs one minute of extra validity.
//   - Serial numbers: 128 random bits.
//   - Workload keys: ECDSA P-256 (GenerateKey); the issuer accepts CSRs with P-256 or P-384
//     keys only.
package identity
