// Package meshtls is the proxy's mutual TLS between meshed proxies: where the workload
// certificate and the trust anchors come from (Source, with the file-based FileSource), the
// TLS 1.3 client and server configurations, the SNI derived from a SPIFFE ID, the ALPN
// protocols that tell the transports apart, and the verification of a peer's certificate
// against the trust anchors (fail closed: an unknown CA, an expired certificate or another
// identity than the one discovery announced ends the handshake).
//
// # Wire format between proxies
//
// The client sends the server's identity as SNI (ServerName) and offers exactly one ALPN
// protocol:
//
//   - "lightmesh.h2": HTTP/2, multiplexing every HTTP request between one pair of proxies;
//     HTTP/1 requests carry the header lightmesh-orig-proto and are restored on the far side.
//   - "lightmesh.http1": one HTTP/1.1 connection, for requests that upgrade (WebSocket).
//   - "lightmesh.tcp": opaque TCP; the client first writes a 4-byte header, "LM" and the
//     original destination port (big-endian), then the application's bytes.
//
// Session tickets are off on both sides, so every connection verifies the peer's chain.
package meshtls
