// Package identity is the controller's identity service: the certificate authority behind
// lightmesh's automatic mTLS. A proxy sends Certify its SPIFFE ID, its projected
// ServiceAccount token and a CSR; the service checks the token with a Kubernetes TokenReview
// for the token audience (identity.lightmesh.io by default), requires the asked identity to be
// the token's ServiceAccount (system:serviceaccount:NS:SA) and the CSR to name exactly that
// identity with an ECDSA P-256 or P-384 key, and returns a workload certificate signed by the
// issuer (24 h by default, NotBefore set a clock-skew allowance in the past).
//
// Checks and their answers, cheapest first, each message naming the check that failed:
//
//   - sizes: a CSR over MaxCSRBytes (InvalidArgument) or a token over MaxTokenBytes
//     (PermissionDenied) is refused before it is parsed, so a 16384-bit RSA key costs nothing;
//     the gRPC server refuses any message over MaxRequestBytes;
//   - identity: not a SPIFFE ID (InvalidArgument), another trust domain (PermissionDenied);
//   - CSR: not DER PKCS#10, not an ECDSA P-256/P-384 key, not exactly the identity as its one
//     URI SAN (InvalidArgument) — all before the TokenReview;
//   - token: empty, not authenticated for the audience, audience not confirmed, not a
//     ServiceAccount, or a ServiceAccount other than the identity's (PermissionDenied); a
//     TokenReview that cannot be made is Unavailable (retry);
//   - signature of the CSR, then signing (InvalidArgument; FailedPrecondition when the issuer
//     has expired).
//
// The issuer (tls.crt, tls.key of a mounted Secret) and the trust anchors (ca.crt, or a
// separate file) are read at start and polled every few seconds; new content replaces the
// issuer only after it loads and chains to the trust anchors. A bad new issuer keeps the old
// one, is logged and recorded as a Kubernetes Event on the controller's Pod. The service serves
// gRPC over TLS with a certificate it issues itself from the issuer for its DNS name, renewed at
// 70 % of its life and whenever the issuer changes, so proxies verify it with nothing but the
// trust anchors.
package identity
