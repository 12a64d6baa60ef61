package dataplane

import (
	"net/http"
	"net/textproto"
	"strings"
)

// Headers the mesh owns. Every header whose name starts with MeshHeaderPrefix is removed
// from requests the proxy cannot vouch for, and set by the proxy from what it verified.
const (
	MeshHeaderPrefix = "Lightmesh-"
	// ClientIDHeader carries the verified SPIFFE ID of the calling workload to the application.
	ClientIDHeader = "Lightmesh-Client-Id"
	// OrigProtoHeader marks a request that arrived as HTTP/1 and crosses the mesh over
	// HTTP/2; the far proxy restores HTTP/1 and removes it.
	OrigProtoHeader = "Lightmesh-Orig-Proto"
	// ProxyErrorHeader says why the proxy itself answered.
	ProxyErrorHeader = "Lightmesh-Proxy-Error"
)

// hopByHop are the connection-specific fields of RFC 9110 section 7.6.1 and their
// historical companions; they never cross a proxy.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Http2-Settings",
}

// removeHopByHop deletes the hop-by-hop fields of h, every field named in Connection
// included. It keeps "TE: trailers", which HTTP/2 allows and gRPC needs.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	trailers := false
	if te := h["Te"]; len(te) == 1 && strings.EqualFold(textproto.TrimString(te[0]), "trailers") {
		trailers = true
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
	if trailers {
		h["Te"] = []string{"trailers"}
	}
}

// upgradeOf returns the protocols an HTTP/1.1 request asks to upgrade to, h2c left out (the
// proxy never upgrades to cleartext HTTP/2), or "" when it asks none.
func upgradeOf(r *http.Request) string {
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return ""
	}
	upgrade := r.Header.Get("Upgrade")
	if upgrade == "" || !headerHasToken(r.Header, "Connection", "upgrade") {
		return ""
	}
	var kept []string
	for proto := range strings.SplitSeq(upgrade, ",") {
		if proto = textproto.TrimString(proto); proto != "" && !strings.EqualFold(proto, "h2c") {
			kept = append(kept, proto)
		}
	}
	return strings.Join(kept, ", ")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// removeMeshHeaders deletes every field the mesh owns.
func removeMeshHeaders(h http.Header) {
	for name := range h {
		if len(name) >= len(MeshHeaderPrefix) && strings.EqualFold(name[:len(MeshHeaderPrefix)], MeshHeaderPrefix) {
			delete(h, name)
		}
	}
}

// fieldCount returns the number of header field lines of h.
func fieldCount(h http.Header) int {
	n := 0
	for _, v := range h {
		n += len(v)
	}
	return n
}
