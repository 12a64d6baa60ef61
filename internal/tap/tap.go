// Package tap is the contract of live request tapping, shared by the proxy's tap server, the
// controller's tap API, `mesh tap`/`mesh top` and the dashboard's tap view.
//
// Flow: the controller's tap API (GET APIPath on the stats service) finds the pods of the
// requested resource and opens, to each pod's proxy, GET ProxyPath on ProxyPort over mutual
// TLS with the controller's own mesh identity; the proxy refuses any other client identity.
// Each side streams newline-delimited JSON, one Event per line, until Max events or Duration.
package tap

import "time"

// Ports, paths and limits.
const (
	// ProxyPort is the proxy's tap listener (mTLS only; not intercepted by proxy-init).
	ProxyPort = 4190
	// ProxyPortName names it in the pod spec.
	ProxyPortName = "mesh-tap"
	// ProxyPath is the proxy's tap endpoint.
	ProxyPath = "/tap"
	// APIPath is the controller's tap endpoint, next to the stat API on the stats service.
	APIPath = "/api/v1/tap"
	// DefaultMax and DefaultDuration bound a tap when the query does not.
	DefaultMax      = 100
	DefaultDuration = 30 * time.Second
	// MaxMax and MaxDuration bound what a query may ask for.
	MaxMax      = 10000
	MaxDuration = 10 * time.Minute
	// ContentType of both streams.
	ContentType = "application/x-ndjson"
)

// Query parameters of both endpoints (the controller's also takes namespace and resource,
// as the stat API does: namespace=NS&resource=deployment/NAME).
const (
	ParamMax        = "max"         // events, at most MaxMax
	ParamDuration   = "duration"    // Go duration, at most MaxDuration
	ParamPathPrefix = "path-prefix" // only requests whose path starts with it
	ParamMethod     = "method"      // only requests with this method
	ParamAuthority  = "authority"   // only requests to this authority
	ParamDirection  = "direction"   // "inbound" or "outbound"; both when empty
)

// Direction of a tapped request as seen by the proxy that reports it.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// Event is one finished request (or one that failed before an answer).
type Event struct {
	// Time is when the request started.
	Time time.Time `json:"time"`
	// Pod and Namespace of the proxy that saw it (filled by the controller).
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Direction string `json:"direction"`
	Method    string `json:"method"`
	Authority string `json:"authority"`
	Path      string `json:"path"`
	// Status is the HTTP status sent to the client; 0 when none was (Error says why).
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	// LatencyMs is from the request's arrival to the end of the response head.
	LatencyMs float64 `json:"latencyMs"`
	// SourceIdentity and DestinationIdentity are SPIFFE IDs; empty when that side is not
	// meshed (plaintext).
	SourceIdentity      string `json:"sourceIdentity,omitempty"`
	DestinationIdentity string `json:"destinationIdentity,omitempty"`
	// SourceAddr and DestinationAddr are ip:port.
	SourceAddr      string `json:"sourceAddr,omitempty"`
	DestinationAddr string `json:"destinationAddr,omitempty"`
}

// StreamError is a line that reports a failure of the stream rather than a request (a pod's
// proxy could not be reached, for example): {"streamError": "...", "pod": "..."}. A reader
// tells it from an Event by its streamError field.
type StreamError struct {
	StreamError string `json:"streamError"`
	Pod         string `json:"pod,omitempty"`
}
