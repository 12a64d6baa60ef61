package translate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// Defaults of Options.
const (
	DefaultDomainSuffix = "cluster.local"
	DefaultNamespace    = "default"
)

// Options are the cluster facts translation needs. Zero fields take the defaults.
type Options struct {
	// DomainSuffix is the cluster's DNS suffix: "user-service" in namespace "microservices"
	// is "user-service.microservices.svc.<DomainSuffix>". Default "cluster.local".
	DomainSuffix string
	// DefaultNamespace is the namespace of resources whose metadata has none, as kubectl
	// would apply them. Default "default".
	DefaultNamespace string
}

func (o Options) withDefaults() Options {
	if o.DomainSuffix == "" {
		o.DomainSuffix = DefaultDomainSuffix
	}
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = DefaultNamespace
	}
	return o
}

// ResourceRef names a Kubernetes object.
type ResourceRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

// String returns "Kind namespace/name".
func (r ResourceRef) String() string {
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Unsupported is a field that lightmesh does not implement, or does not know (a typo),
// found in a resource. Reason says what lightmesh does instead.
type Unsupported struct {
	Resource  ResourceRef `json:"resource"`
	FieldPath string      `json:"fieldPath"`
	Reason    string      `json:"reason"`
}

// String returns "Kind namespace/name: field.path: reason".
func (u Unsupported) String() string {
	if u.FieldPath == "" {
		return u.Resource.String() + ": " + u.Reason
	}
	return u.Resource.String() + ": " + u.FieldPath + ": " + u.Reason
}

// FieldError is an invalid value in a resource; the resource is left out of the model.
type FieldError struct {
	Resource  ResourceRef
	FieldPath string
	Err       error
}

// Error returns "Kind namespace/name: field.path: problem".
func (e *FieldError) Error() string {
	if e.FieldPath == "" {
		return e.Resource.String() + ": " + e.Err.Error()
	}
	return e.Resource.String() + ": " + e.FieldPath + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Result is the model translated from a set of resources, and every field it could not
// honour.
type Result struct {
	Model       policy.Model  `json:"model"`
	Unsupported []Unsupported `json:"unsupported,omitempty"`
}

// TranslateYAML translates a stream of YAML or JSON documents (separated by "---"; a
// kind: List is expanded). On error, Result still holds every resource that translated:
// the error joins one *FieldError per invalid resource.
func TranslateYAML(data []byte, opts Options) (Result, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return Result{}, err
	}
	return translateDocuments(docs, opts)
}

// TranslateObjects translates objects read from the API server (for example from a dynamic
// informer). Errors are as for TranslateYAML.
func TranslateObjects(objects []*unstructured.Unstructured, opts Options) (Result, error) {
	docs := make([]document, 0, len(objects))
	for i, obj := range objects {
		data, err := json.Marshal(obj.Object)
		if err != nil {
			return Result{}, fmt.Errorf("object %d (%s %s/%s): %w", i, obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		docs = append(docs, document{json: data})
	}
	return translateDocuments(docs, opts)
}

// document is one object of the input, as JSON. invalid, when set, makes it fail once its
// name is known (a YAML duplicate key, which conversion to JSON would silently drop).
type document struct {
	json    []byte
	invalid error
}

// MaxDocumentBytes bounds one YAML document of TranslateYAML, as mesh inject does: a policy
// resource is a few KiB, and converting YAML to JSON costs many times its size.
const MaxDocumentBytes = 4 << 20

// splitDocuments returns each non-empty document of a YAML stream as JSON.
func splitDocuments(data []byte) ([]document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []document
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read YAML document %d: %w", n, err)
		}
		if len(doc) > MaxDocumentBytes {
			return nil, fmt.Errorf("YAML document %d is %d bytes, over the %d MiB limit of one resource; split it or remove what it does not need", n, len(doc), MaxDocumentBytes>>20)
		}
		jsonDoc, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("YAML document %d: %w; fix its syntax", n, err)
		}
		if trimmed := bytes.TrimSpace(jsonDoc); len(trimmed) == 0 || string(trimmed) == "null" {
			continue // only comments
		}
		var invalid error
		if _, err := yaml.YAMLToJSONStrict(doc); err != nil {
			invalid = fmt.Errorf("%w; remove the duplicate key", err)
		}
		docs = append(docs, document{json: jsonDoc, invalid: invalid})
	}
}

// translator holds the state of one translation.
type translator struct {
	opts   Options
	result Result
	errs   []error

	virtualServices []timedVirtualHost
	destinations    []timedDestination
	httpRoutes      []*parsedHTTPRoute
}

type timedVirtualHost struct {
	created time.Time
	key     string
	host    policy.VirtualHost
}

type timedDestination struct {
	created time.Time
	key     string
	dest    policy.Destination
}

func translateDocuments(docs []document, opts Options) (Result, error) {
	t := &translator{opts: opts.withDefaults()}
	for i, doc := range docs {
		t.document(i+1, doc.json, doc.invalid)
	}
	t.finish()
	return t.result, errors.Join(t.errs...)
}

// header is what every object starts with.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

func (t *translator) document(n int, doc []byte, invalid error) {
	var h header
	if err := json.Unmarshal(doc, &h); err != nil {
		t.errs = append(t.errs, fmt.Errorf("document %d is not an object: %w; give Kubernetes resources", n, err))
		return
	}
	if h.Kind == "List" || strings.HasSuffix(h.Kind, "List") && h.Items != nil {
		for _, item := range h.Items {
			t.document(n, item, invalid)
		}
		return
	}
	namespace := h.Metadata.Namespace
	if namespace == "" {
		namespace = t.opts.DefaultNamespace
	}
	r := &resource{t: t, ref: ResourceRef{APIVersion: h.APIVersion, Kind: h.Kind, Namespace: namespace, Name: h.Metadata.Name}, raw: doc}
	if h.APIVersion == "" || h.Kind == "" {
		t.errs = append(t.errs, fmt.Errorf("document %d has no apiVersion or kind; give Kubernetes resources", n))
		return
	}
	if h.Metadata.Name == "" {
		r.fail("metadata.name", errors.New("missing; give the resource a name"))
		return
	}
	if invalid != nil {
		r.fail("", invalid)
		return
	}
	group, version, _ := strings.Cut(h.APIVersion, "/")
	switch {
	case group == "networking.istio.io" && slices.Contains([]string{"v1alpha3", "v1beta1", "v1"}, version):
		switch h.Kind {
		case "Gateway":
			r.istioGateway()
			return
		case "VirtualService":
			r.virtualService()
			return
		case "DestinationRule":
			r.destinationRule()
			return
		}
	case group == "security.istio.io" && slices.Contains([]string{"v1beta1", "v1"}, version):
		switch h.Kind {
		case "PeerAuthentication":
			r.peerAuthentication()
			return
		case "AuthorizationPolicy":
			r.authorizationPolicy()
			return
		}
	case group == "gateway.networking.k8s.io" && slices.Contains([]string{"v1", "v1beta1"}, version):
		if h.Kind == "HTTPRoute" {
			r.httpRoute()
			return
		}
	}
	r.unsupported("", fmt.Sprintf("%s %s is not translated: lightmesh reads networking.istio.io Gateway, VirtualService and DestinationRule, security.istio.io PeerAuthentication and AuthorizationPolicy, and gateway.networking.k8s.io HTTPRoute", h.APIVersion, h.Kind))
}

// finish sorts what needs the whole set of resources and fills the model.
func (t *translator) finish() {
	slices.SortStableFunc(t.virtualServices, func(a, b timedVirtualHost) int {
		return compareAge(a.created, a.key, b.created, b.key)
	})
	for _, vs := range t.virtualServices {
		t.result.Model.VirtualHosts = append(t.result.Model.VirtualHosts, vs.host)
	}
	t.result.Model.VirtualHosts = append(t.result.Model.VirtualHosts, t.httpRouteHosts()...)

	slices.SortStableFunc(t.destinations, func(a, b timedDestination) int {
		return compareAge(a.created, a.key, b.created, b.key)
	})
	for _, d := range t.destinations {
		t.result.Model.Destinations = append(t.result.Model.Destinations, d.dest)
	}
	slices.SortStableFunc(t.result.Model.Gateways, func(a, b policy.Gateway) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	slices.SortStableFunc(t.result.Model.PeerAuthentications, func(a, b policy.PeerAuthentication) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	slices.SortStableFunc(t.result.Model.AuthorizationPolicies, func(a, b policy.AuthorizationPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
}

// compareAge orders the older first, then by key (namespace/name).
func compareAge(aTime time.Time, aKey string, bTime time.Time, bKey string) int {
	if c := aTime.Compare(bTime); c != 0 {
		return c
	}
	return strings.Compare(aKey, bKey)
}

// resource is one object being translated.
type resource struct {
	t   *translator
	ref ResourceRef
	raw []byte
}

func (r *resource) key() string { return r.ref.Namespace + "/" + r.ref.Name }

// source names the resource in the model, such as "VirtualService ns/name".
func (r *resource) source() string { return r.ref.String() }

func (r *resource) unsupported(path, reason string) {
	r.t.result.Unsupported = append(r.t.result.Unsupported, Unsupported{Resource: r.ref, FieldPath: path, Reason: reason})
}

// rawField is an optional field, for reportSet.
type rawField struct {
	name string
	raw  json.RawMessage
}

func field(name string, raw json.RawMessage) rawField { return rawField{name, raw} }

// reportSet reports each of fields that is set, at path.name, with reason; it returns
// whether one was.
func (r *resource) reportSet(path, reason string, fields ...rawField) bool {
	reported := false
	for _, f := range fields {
		if set(f.raw) {
			r.unsupported(path+"."+f.name, reason)
			reported = true
		}
	}
	return reported
}

// fail records that the resource is invalid; the caller leaves it out of the model.
func (r *resource) fail(path string, err error) {
	r.t.errs = append(r.t.errs, &FieldError{Resource: r.ref, FieldPath: path, Err: err})
}

// failf is fail with a formatted message.
func (r *resource) failf(path, format string, args ...any) {
	r.fail(path, fmt.Errorf(format, args...))
}

// decode decodes the resource strictly into v: unknown and duplicate fields are reported as
// unsupported, and a value of the wrong type fails the resource.
func (r *resource) decode(v any) bool {
	strictErrs, err := sigsjson.UnmarshalStrict(r.raw, v)
	if err != nil {
		r.fail("", fmt.Errorf("decode: %w; check the field types against the %s reference", err, r.ref.Kind))
		return false
	}
	for _, strictErr := range strictErrs {
		path := strictErr.Error()
		var fieldErr sigsjson.FieldError
		if errors.As(strictErr, &fieldErr) {
			path = fieldErr.FieldPath()
		}
		if strings.Contains(strictErr.Error(), "duplicate field") {
			r.unsupported(path, "duplicate field: only the last value is used; remove the others")
			continue
		}
		r.unsupported(path, fmt.Sprintf("unknown field: %s %s has no such field, so it is ignored; check its spelling", r.ref.APIVersion, r.ref.Kind))
	}
	return true
}

// resolveHost turns a short service name into a fully qualified one in namespace, as
// Istio does: a name without dots is "<name>.<namespace>.svc.<suffix>"; names with dots and
// wildcards are kept (lower-cased).
func (r *resource) resolveHost(path, host string) (string, bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if err := validateHost(host); err != nil {
		r.fail(path, err)
		return "", false
	}
	if host == "*" || strings.Contains(host, ".") {
		return host, true
	}
	return host + "." + r.ref.Namespace + ".svc." + r.t.opts.DomainSuffix, true
}

func validateHost(host string) error {
	if host == "" {
		return errors.New("empty host; name a service, a domain or \"*\"")
	}
	if host == "*" {
		return nil
	}
	name := strings.TrimPrefix(host, "*.")
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q has an empty or too long label; write a DNS name such as user-service or api.example.com", host)
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("host %q has the character %q; use letters, digits, '-' and '.', and '*' only as a leading \"*.\"", host, c)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q has a label starting or ending with '-'", host)
		}
	}
	return nil
}

// parseDuration reads an Istio duration ("10s", "1.5s", "500ms", "5m").
func (r *resource) parseDuration(path string, s *string) (policy.Duration, bool) {
	if s == nil {
		return 0, true
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		r.failf(path, "malformed duration %q; write it like \"10s\", \"1.5s\" or \"500ms\"", *s)
		return 0, false
	}
	if d < 0 {
		r.failf(path, "negative duration %q; give a positive one", *s)
		return 0, false
	}
	return policy.Duration(d), true
}

func emptyToNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
