package identity

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is the trust domain of a mesh installed without one.
const DefaultTrustDomain = "cluster.local"

const (
	spiffeScheme = "spiffe://"
	// maxSpiffeIDLength and maxTrustDomainLength are the SPIFFE specification's limits.
	maxSpiffeIDLength    = 2048
	maxTrustDomainLength = 255
)

// ErrInvalidSpiffeID is wrapped by every error about a malformed SPIFFE ID or principal.
var ErrInvalidSpiffeID = errors.New("invalid SPIFFE ID")

// SpiffeID is a workload identity: the ServiceAccount ServiceAccount in namespace Namespace
// of trust domain TrustDomain, written spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>.
// Build one with NewSpiffeID, ParseSpiffeID or ParsePrincipal to have it validated.
type SpiffeID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// NewSpiffeID returns the identity of serviceAccount in namespace of trustDomain, after
// checking each part.
func NewSpiffeID(trustDomain, namespace, serviceAccount string) (SpiffeID, error) {
	id := SpiffeID{TrustDomain: trustDomain, Namespace: namespace, ServiceAccount: serviceAccount}
	if err := id.Validate(); err != nil {
		return SpiffeID{}, err
	}
	return id, nil
}

// ParseSpiffeID parses s, which must be exactly spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>.
func ParseSpiffeID(s string) (SpiffeID, error) {
	if len(s) > maxSpiffeIDLength {
		return SpiffeID{}, fmt.Errorf("%w: it is %d bytes long; the limit is %d", ErrInvalidSpiffeID, len(s), maxSpiffeIDLength)
	}
	rest, ok := strings.CutPrefix(s, spiffeScheme)
	if !ok {
		return SpiffeID{}, fmt.Errorf("%w %q: it must start with %q (lower case)", ErrInvalidSpiffeID, s, spiffeScheme)
	}
	trustDomain, path, hasPath := strings.Cut(rest, "/")
	if err := validateTrustDomain(trustDomain); err != nil {
		return SpiffeID{}, fmt.Errorf("%w %q: %w", ErrInvalidSpiffeID, s, err)
	}
	if !hasPath {
		return SpiffeID{}, fmt.Errorf("%w %q: it has no path; write spiffe://%s/ns/<namespace>/sa/<serviceaccount>", ErrInvalidSpiffeID, s, trustDomain)
	}
	segments := strings.Split(path, "/")
	for _, segment := range segments {
		if err := validatePathSegment(segment); err != nil {
			return SpiffeID{}, fmt.Errorf("%w %q: %w", ErrInvalidSpiffeID, s, err)
		}
	}
	if len(segments) != 4 || segments[0] != "ns" || segments[2] != "sa" {
		return SpiffeID{}, fmt.Errorf("%w %q: the path must be /ns/<namespace>/sa/<serviceaccount>", ErrInvalidSpiffeID, s)
	}
	return SpiffeID{TrustDomain: trustDomain, Namespace: segments[1], ServiceAccount: segments[3]}, nil
}

// ParsePrincipal parses an Istio-style principal, the SPIFFE ID without its scheme, such as
// "cluster.local/ns/microservices/sa/order-service".
func ParsePrincipal(principal string) (SpiffeID, error) {
	if strings.Contains(principal, "://") {
		return SpiffeID{}, fmt.Errorf("%w: principal %q has a scheme; write it without one, as <trust-domain>/ns/<namespace>/sa/<serviceaccount>", ErrInvalidSpiffeID, principal)
	}
	id, err := ParseSpiffeID(spiffeScheme + principal)
	if err != nil {
		return SpiffeID{}, fmt.Errorf("principal %q: %w", principal, err)
	}
	return id, nil
}

// String returns the SPIFFE ID, spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>.
func (id SpiffeID) String() string {
	return spiffeScheme + id.Principal()
}

// Principal returns the Istio-style principal: the SPIFFE ID without "spiffe://".
func (id SpiffeID) Principal() string {
	return id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns the SPIFFE ID as the URL that goes into a certificate's URI SAN.
func (id SpiffeID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// IsZero reports whether id is the zero SpiffeID.
func (id SpiffeID) IsZero() bool {
	return id == SpiffeID{}
}

// Validate checks the trust domain and the two names against the SPIFFE specification.
func (id SpiffeID) Validate() error {
	if err := validateTrustDomain(id.TrustDomain); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpiffeID, err)
	}
	if err := validatePathSegment(id.Namespace); err != nil {
		return fmt.Errorf("%w: namespace: %w", ErrInvalidSpiffeID, err)
	}
	if err := validatePathSegment(id.ServiceAccount); err != nil {
		return fmt.Errorf("%w: service account: %w", ErrInvalidSpiffeID, err)
	}
	if n := len(id.String()); n > maxSpiffeIDLength {
		return fmt.Errorf("%w: it is %d bytes long; the limit is %d", ErrInvalidSpiffeID, n, maxSpiffeIDLength)
	}
	return nil
}

// ValidateTrustDomain checks that trustDomain is a SPIFFE trust domain name: lower-case
// letters, digits, '.', '-' and '_', at most 255 characters.
func ValidateTrustDomain(trustDomain string) error {
	if err := validateTrustDomain(trustDomain); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpiffeID, err)
	}
	return nil
}

func validateTrustDomain(trustDomain string) error {
	if trustDomain == "" {
		return errors.New("the trust domain is empty; use a DNS-like name such as " + DefaultTrustDomain)
	}
	if len(trustDomain) > maxTrustDomainLength {
		return fmt.Errorf("the trust domain is %d characters long; the limit is %d", len(trustDomain), maxTrustDomainLength)
	}
	for _, r := range trustDomain {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
		case r >= 'A' && r <= 'Z':
			return fmt.Errorf("the trust domain %q has upper-case letters; write it in lower case", trustDomain)
		default:
			return fmt.Errorf("the trust domain %q has the character %q; use only lower-case letters, digits, '.', '-' and '_'", trustDomain, r)
		}
	}
	return nil
}

func validatePathSegment(segment string) error {
	switch segment {
	case "":
		return errors.New("a path segment is empty; remove doubled or trailing slashes and fill in every name")
	case ".", "..":
		return fmt.Errorf("the path segment %q is not allowed", segment)
	}
	for _, r := range segment {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
		default:
			return fmt.Errorf("the path segment %q has the character %q; use only letters, digits, '.', '-' and '_'", segment, r)
		}
	}
	return nil
}
