package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/internal/version"
)

// Values are the settings of an installation: `mesh install -f values.yaml --set key=value`
// changes them, and the rendered lightmesh-config ConfigMap holds them (key config.yaml, with
// images resolved and the trust anchors filled in) for `mesh inject` and the webhook.
type Values struct {
	// Namespace is the control plane's namespace.
	Namespace string `json:"namespace"`
	// ClusterDomain is the cluster's DNS domain (Services are <name>.<ns>.svc.<domain>).
	ClusterDomain string `json:"clusterDomain"`
	// ImageRegistry prefixes every image left empty below.
	ImageRegistry   string `json:"imageRegistry"`
	ImagePullPolicy string `json:"imagePullPolicy"`

	Controller ControllerValues `json:"controller"`
	Proxy      ProxyValues      `json:"proxy"`
	ProxyInit  ProxyInitValues  `json:"proxyInit"`
	Identity   IdentityValues   `json:"identity"`
	Webhook    WebhookValues    `json:"webhook"`

	// HighAvailability (--ha) spreads the controller's replicas over nodes (pod
	// anti-affinity) and keeps one of them up through voluntary disruptions (a
	// PodDisruptionBudget). --ha also sets controller.replicas 3 and webhook.failurePolicy Fail.
	HighAvailability bool `json:"highAvailability"`

	// Add-ons, off by default: Prometheus scraping the proxies, Grafana with a dashboard of
	// the proxies' metrics, and Jaeger (all-in-one, agent on 6831/udp).
	Prometheus AddonValues `json:"prometheus"`
	Grafana    AddonValues `json:"grafana"`
	Jaeger     AddonValues `json:"jaeger"`

	// Tracing makes every proxy send a span per request to a Jaeger agent, with the seed's
	// Jaeger client settings (jaeger-config: sampling.type/param, reporter.logSpans and
	// localAgentHostPort). With the Jaeger add-on and no agent address, the add-on's agent.
	Tracing TracingValues `json:"tracing"`

	// Ingress (mesh install --ingress) deploys the ingress gateway: pods labelled
	// istio: ingressgateway that serve the Istio Gateways selecting them.
	Ingress IngressValues `json:"ingress"`

	// Stats configure the controller's stats service (mesh stat, the dashboard).
	Stats StatsValues `json:"stats"`
}

// StatsValues configure the stats service.
type StatsValues struct {
	// PrometheusURL, when set, makes the stats service answer from PromQL queries to this
	// Prometheus (which must scrape the proxies with the add-on's labels, namespace and pod)
	// instead of scraping the proxies itself; for the add-on:
	// http://prometheus.<namespace>.svc:9090.
	PrometheusURL string `json:"prometheusUrl"`
}

// TracingValues are the proxies' Jaeger client settings.
type TracingValues struct {
	Enabled  bool            `json:"enabled"`
	Sampling TracingSampling `json:"sampling"`
	Reporter TracingReporter `json:"reporter"`
}

// TracingSampling is Jaeger's sampler: type const, probabilistic or ratelimiting, and its
// param.
type TracingSampling struct {
	Type  string  `json:"type"`
	Param float64 `json:"param"`
}

// TracingReporter is where spans go: the agent's host:port (UDP 6831) and whether the
// proxies log every span.
type TracingReporter struct {
	LogSpans           bool   `json:"logSpans"`
	LocalAgentHostPort string `json:"localAgentHostPort"`
}

// AddonValues configure one optional add-on.
type AddonValues struct {
	Enabled   bool      `json:"enabled"`
	Image     string    `json:"image"`
	Resources Resources `json:"resources"`
}

// Default add-on images (the seed's linkerd-config names, pinned).
const (
	DefaultPrometheusImage = "prom/prometheus:v3.5.0"
	DefaultGrafanaImage    = "grafana/grafana:12.1.1"
	DefaultJaegerImage     = "jaegertracing/all-in-one:1.72.0"
)

// HAValues applies what --ha means to v: three controller replicas spread over nodes, a
// PodDisruptionBudget, and a webhook that refuses pods while it cannot answer. -f files and
// --set come after it, so they can change any of it.
func HAValues(v *Values) {
	v.HighAvailability = true
	v.Controller.Replicas = 3
	v.Webhook.FailurePolicy = string(admissionregistrationv1.Fail)
}

// WebhookValues configure the injector's MutatingWebhookConfiguration.
type WebhookValues struct {
	// FailurePolicy is what the API server does when the injector does not answer: Ignore
	// (admit the pod without a proxy) or Fail (refuse the pod).
	FailurePolicy string `json:"failurePolicy"`
}

// ControllerValues configure the mesh-controller Deployment.
type ControllerValues struct {
	// Image defaults to <imageRegistry>/mesh-controller:<version>.
	Image    string `json:"image"`
	Replicas int32  `json:"replicas"`
	LogLevel string `json:"logLevel"`
	// LogFormat is kept from the seed's linkerd-config (controllerLogFormat); the controller
	// has no flag for it yet, so it is not passed on.
	LogFormat string    `json:"logFormat"`
	Resources Resources `json:"resources"`
}

// ProxyValues configure every injected proxy; config.lightmesh.io/* annotations override
// them per workload.
type ProxyValues struct {
	// Image defaults to <imageRegistry>/mesh-proxy:<version>.
	Image             string    `json:"image"`
	LogLevel          string    `json:"logLevel"`
	LogFormat         string    `json:"logFormat"`
	Resources         Resources `json:"resources"`
	OpaquePorts       string    `json:"opaquePorts"`
	SkipInboundPorts  string    `json:"skipInboundPorts"`
	SkipOutboundPorts string    `json:"skipOutboundPorts"`
	SkipSubnets       string    `json:"skipSubnets"`
	// SchedulerPoll is "" (the proxy's own default applies: no env is set) or one of
	// inject.SchedulerPollValues, which becomes the proxy's MESH_PROXY_SCHEDULER_POLL. It is
	// a string like the other proxy values, so that --set takes it verbatim and anything but
	// true or false is refused by name (a YAML bool would also take yes, on and True).
	SchedulerPoll string `json:"schedulerPoll"`
	// MaxInFlightRequests is 0 (the proxy's own default applies: no env is set) or
	// inject.MinMaxInFlightRequests..MaxMaxInFlightRequests, which becomes the proxy's
	// MESH_PROXY_MAX_IN_FLIGHT_REQUESTS.
	MaxInFlightRequests int `json:"maxInFlightRequests"`
}

// ProxyInitValues configure the mesh-init init container.
type ProxyInitValues struct {
	// Image defaults to <imageRegistry>/mesh-proxy-init:<version>.
	Image     string    `json:"image"`
	Resources Resources `json:"resources"`
}

// IdentityValues configure workload identity.
type IdentityValues struct {
	TrustDomain string `json:"trustDomain"`
	// TrustAnchorsPEM is filled in by `mesh install` from the generated or given anchors;
	// setting it by hand has no effect.
	TrustAnchorsPEM string `json:"trustAnchorsPEM"`
}

// Resources are requests and limits, as in the seed's IstioOperator values.
type Resources struct {
	Requests ResourceList `json:"requests"`
	Limits   ResourceList `json:"limits"`
}

// ResourceList holds quantities; an empty one is left out of the manifests.
type ResourceList struct {
	CPU    string `json:"cpu"`
	Memory string `json:"memory"`
}

// DefaultValues are the values of a default installation. Resources come from the seed's
// IstioOperator: the proxy's are values.global.proxy.resources, the controller's
// values.pilot.resources; log level and format from its linkerd-config.
func DefaultValues() Values {
	return Values{
		Namespace:       "lightmesh",
		ClusterDomain:   "cluster.local",
		ImageRegistry:   version.DefaultRegistry,
		ImagePullPolicy: string(corev1.PullIfNotPresent),
		Controller: ControllerValues{
			Replicas:  1,
			LogLevel:  "info",
			LogFormat: "plain",
			Resources: Resources{
				Requests: ResourceList{CPU: "100m", Memory: "128Mi"},
				Limits:   ResourceList{CPU: "500m", Memory: "2048Mi"},
			},
		},
		Proxy: ProxyValues{
			LogLevel:  "info",
			LogFormat: "plain",
			Resources: Resources{
				Requests: ResourceList{CPU: inject.DefaultProxyCPURequest, Memory: inject.DefaultProxyMemoryRequest},
				Limits:   ResourceList{CPU: inject.DefaultProxyCPULimit, Memory: inject.DefaultProxyMemoryLimit},
			},
			OpaquePorts: inject.DefaultOpaquePorts,
		},
		ProxyInit: ProxyInitValues{
			Resources: Resources{
				Requests: ResourceList{CPU: inject.DefaultProxyInitCPURequest, Memory: inject.DefaultProxyInitMemoryRequest},
				Limits:   ResourceList{CPU: inject.DefaultProxyInitCPULimit, Memory: inject.DefaultProxyInitMemoryLimit},
			},
		},
		Identity: IdentityValues{TrustDomain: identity.DefaultTrustDomain},
		Webhook:  WebhookValues{FailurePolicy: string(admissionregistrationv1.Ignore)},
		Prometheus: AddonValues{Image: DefaultPrometheusImage, Resources: Resources{
			Requests: ResourceList{CPU: "100m", Memory: "256Mi"},
			Limits:   ResourceList{CPU: "1", Memory: "1Gi"},
		}},
		Grafana: AddonValues{Image: DefaultGrafanaImage, Resources: Resources{
			Requests: ResourceList{CPU: "50m", Memory: "64Mi"},
			Limits:   ResourceList{CPU: "500m", Memory: "256Mi"},
		}},
		Jaeger: AddonValues{Image: DefaultJaegerImage, Resources: Resources{
			Requests: ResourceList{CPU: "100m", Memory: "128Mi"},
			Limits:   ResourceList{CPU: "1", Memory: "1Gi"},
		}},
		Tracing: TracingValues{Sampling: TracingSampling{Type: "const", Param: 1}},
		Ingress: IngressValues{Replicas: 1},
	}
}

// Resolve fills the empty images from the registry and the version.
func (v *Values) Resolve() {
	if v.Controller.Image == "" {
		v.Controller.Image = version.Image(v.ImageRegistry, "mesh-controller")
	}
	if v.Proxy.Image == "" {
		v.Proxy.Image = version.Image(v.ImageRegistry, "mesh-proxy")
	}
	if v.ProxyInit.Image == "" {
		v.ProxyInit.Image = version.Image(v.ImageRegistry, "mesh-proxy-init")
	}
}

// Validate checks every value and names the one at fault by its --set path.
func (v *Values) Validate() error {
	if errs := validation.IsDNS1123Label(v.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", v.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(v.ClusterDomain); len(errs) > 0 {
		return fmt.Errorf("clusterDomain %q: %s", v.ClusterDomain, strings.Join(errs, "; "))
	}
	switch corev1.PullPolicy(v.ImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("imagePullPolicy %q: use Always, IfNotPresent or Never", v.ImagePullPolicy)
	}
	switch admissionregistrationv1.FailurePolicyType(v.Webhook.FailurePolicy) {
	case admissionregistrationv1.Ignore, admissionregistrationv1.Fail:
	default:
		return fmt.Errorf("webhook.failurePolicy %q: use Ignore or Fail", v.Webhook.FailurePolicy)
	}
	if v.Controller.Replicas < 1 {
		return fmt.Errorf("controller.replicas %d: run at least 1", v.Controller.Replicas)
	}
	if n := v.Proxy.MaxInFlightRequests; n != 0 {
		if err := inject.ValidateMaxInFlightRequests(n); err != nil {
			return fmt.Errorf("proxy.maxInFlightRequests %d: %w, or 0 for the proxy's default", n, err)
		}
	}
	type check struct {
		path, value string
		check       func(string) error
	}
	checks := []check{
		{"controller.image", v.Controller.Image, optional(inject.ValidateImage)},
		{"controller.logLevel", v.Controller.LogLevel, inject.ValidateLogLevel},
		{"controller.logFormat", v.Controller.LogFormat, inject.ValidateLogFormat},
		{"proxy.image", v.Proxy.Image, optional(inject.ValidateImage)},
		{"proxy.logLevel", v.Proxy.LogLevel, inject.ValidateLogLevel},
		{"proxy.logFormat", v.Proxy.LogFormat, inject.ValidateLogFormat},
		{"proxy.opaquePorts", v.Proxy.OpaquePorts, ports},
		{"proxy.skipInboundPorts", v.Proxy.SkipInboundPorts, ports},
		{"proxy.skipOutboundPorts", v.Proxy.SkipOutboundPorts, ports},
		{"proxy.skipSubnets", v.Proxy.SkipSubnets, subnets},
		{"proxy.schedulerPoll", v.Proxy.SchedulerPoll, optional(schedulerPoll)},
		{"proxyInit.image", v.ProxyInit.Image, optional(inject.ValidateImage)},
		{"identity.trustDomain", v.Identity.TrustDomain, trustDomain},
		{"prometheus.image", v.Prometheus.Image, inject.ValidateImage},
		{"grafana.image", v.Grafana.Image, inject.ValidateImage},
		{"jaeger.image", v.Jaeger.Image, inject.ValidateImage},
		{"stats.prometheusUrl", v.Stats.PrometheusURL, optional(httpURL)},
	}
	for _, r := range []struct {
		path string
		res  Resources
	}{
		{"controller.resources", v.Controller.Resources},
		{"proxy.resources", v.Proxy.Resources},
		{"proxyInit.resources", v.ProxyInit.Resources},
		{"prometheus.resources", v.Prometheus.Resources},
		{"grafana.resources", v.Grafana.Resources},
		{"jaeger.resources", v.Jaeger.Resources},
	} {
		path, res := r.path, r.res
		checks = append(checks,
			check{path + ".requests.cpu", res.Requests.CPU, quantity},
			check{path + ".requests.memory", res.Requests.Memory, quantity},
			check{path + ".limits.cpu", res.Limits.CPU, quantity},
			check{path + ".limits.memory", res.Limits.Memory, quantity})
	}
	for _, c := range checks {
		if err := c.check(c.value); err != nil {
			return fmt.Errorf("%s: %q %w", c.path, c.value, err)
		}
	}
	cfg, err := v.injectConfig()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	return nil
}

func optional(check func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return check(s)
	}
}

func trustDomain(s string) error {
	if err := identity.ValidateTrustDomain(s); err != nil {
		return fmt.Errorf("is not a trust domain: %w", err)
	}
	return nil
}

func ports(s string) error {
	_, err := inject.ParsePorts(s)
	return err
}

func subnets(s string) error {
	_, err := inject.ParseSubnets(s)
	return err
}

func schedulerPoll(s string) error {
	_, err := inject.ParseSchedulerPoll(s)
	return err
}

// httpURL accepts an http:// or https:// URL with a host.
func httpURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("is not an http:// or https:// URL with a host, such as http://prometheus.lightmesh.svc:9090")
	}
	return nil
}

// quantity accepts an empty value (left out) or a positive resource quantity.
func quantity(s string) error {
	if s == "" {
		return nil
	}
	_, err := inject.ParseQuantity(s)
	return err
}

// InjectConfig is the injection configuration of this installation, for `mesh inject` and
// the webhook. Call it on resolved, valid values.
func (v *Values) InjectConfig() (inject.Config, error) {
	if err := v.Validate(); err != nil {
		return inject.Config{}, err
	}
	return v.injectConfig()
}

func (v *Values) injectConfig() (inject.Config, error) {
	resolved := *v
	resolved.Resolve()
	cfg := inject.DefaultConfig()
	cfg.ProxyImage = resolved.Proxy.Image
	cfg.ProxyInitImage = resolved.ProxyInit.Image
	cfg.ImagePullPolicy = corev1.PullPolicy(v.ImagePullPolicy)
	cfg.LogLevel = v.Proxy.LogLevel
	cfg.LogFormat = v.Proxy.LogFormat
	cfg.ProxyResources = requirements(v.Proxy.Resources)
	cfg.ProxyInitResources = requirements(v.ProxyInit.Resources)
	var err error
	if cfg.OpaquePorts, err = inject.ParsePorts(v.Proxy.OpaquePorts); err != nil {
		return cfg, fmt.Errorf("proxy.opaquePorts: %w", err)
	}
	if cfg.SkipInboundPorts, err = inject.ParsePorts(v.Proxy.SkipInboundPorts); err != nil {
		return cfg, fmt.Errorf("proxy.skipInboundPorts: %w", err)
	}
	if cfg.SkipOutboundPorts, err = inject.ParsePorts(v.Proxy.SkipOutboundPorts); err != nil {
		return cfg, fmt.Errorf("proxy.skipOutboundPorts: %w", err)
	}
	if cfg.SkipSubnets, err = inject.ParseSubnets(v.Proxy.SkipSubnets); err != nil {
		return cfg, fmt.Errorf("proxy.skipSubnets: %w", err)
	}
	if v.Proxy.SchedulerPoll != "" {
		poll, err := inject.ParseSchedulerPoll(v.Proxy.SchedulerPoll)
		if err != nil {
			return cfg, fmt.Errorf("proxy.schedulerPoll: %q %w", v.Proxy.SchedulerPoll, err)
		}
		cfg.SchedulerPoll = &poll
	}
	cfg.MaxInFlightRequests = v.Proxy.MaxInFlightRequests
	cfg.ControlPlaneNamespace = v.Namespace
	cfg.ClusterDomain = v.ClusterDomain
	cfg.TrustDomain = v.Identity.TrustDomain
	cfg.TrustAnchorsPEM = v.Identity.TrustAnchorsPEM
	if t := v.Tracing; t.Enabled {
		agent := t.Reporter.LocalAgentHostPort
		if agent == "" && v.Jaeger.Enabled {
			agent = JaegerAgentAddress(*v)
		}
		if agent == "" {
			return cfg, errors.New("tracing.reporter.localAgentHostPort: give the Jaeger agent's host:port (such as jaeger-agent.observability:6831), or enable the jaeger add-on")
		}
		cfg.Tracing = &inject.Tracing{
			SamplerType:        t.Sampling.Type,
			SamplerParam:       strconv.FormatFloat(t.Sampling.Param, 'g', -1, 64),
			LocalAgentHostPort: agent,
			LogSpans:           t.Reporter.LogSpans,
		}
		if err := cfg.Tracing.Validate(); err != nil {
			return cfg, fmt.Errorf("tracing: %w", err)
		}
	}
	return cfg, nil
}

// requirements turns validated Resources into Kubernetes requirements.
func requirements(r Resources) corev1.ResourceRequirements {
	return inject.Resources(r.Requests.CPU, r.Limits.CPU, r.Requests.Memory, r.Limits.Memory)
}

// ParseValues reads values YAML (or JSON) strictly: an unknown key is an error.
func ParseValues(data []byte) (Values, error) {
	v := DefaultValues()
	if err := MergeValues(&v, data); err != nil {
		return Values{}, err
	}
	return v, nil
}

// ParseStoredValues reads the values of a lightmesh-config ConfigMap leniently, for the
// controller: keys this version does not know (written by a newer `mesh install` or
// `mesh upgrade` while this controller still runs, during an upgrade) are left out and
// returned by their paths, so the caller can log them; known keys must have their types.
func ParseStoredValues(data []byte) (Values, []string, error) {
	v := DefaultValues()
	if len(bytes.TrimSpace(data)) == 0 {
		return v, nil, nil
	}
	var given any
	if err := yaml.Unmarshal(data, &given); err != nil {
		return Values{}, nil, errors.New(cleanYAMLError(err))
	}
	schema, err := toTree(DefaultValues())
	if err != nil {
		return Values{}, nil, err
	}
	var unknown []string
	pruned := pruneUnknown(given, schema, "", &unknown)
	raw, err := json.Marshal(pruned)
	if err != nil {
		return Values{}, nil, err
	}
	if err := yaml.UnmarshalStrict(raw, &v); err != nil {
		return Values{}, nil, errors.New(cleanYAMLError(err))
	}
	sort.Strings(unknown)
	return v, unknown, nil
}

// pruneUnknown returns given without the keys schema lacks, adding their paths to unknown.
func pruneUnknown(given any, schema map[string]any, path string, unknown *[]string) any {
	m, ok := given.(map[string]any)
	if !ok {
		return given
	}
	out := map[string]any{}
	for key, value := range m {
		full := strings.TrimPrefix(path+"."+key, ".")
		want, known := schema[key]
		if !known {
			*unknown = append(*unknown, full)
			continue
		}
		if sub, isGroup := want.(map[string]any); isGroup {
			value = pruneUnknown(value, sub, full, unknown)
		}
		out[key] = value
	}
	return out
}

// MergeValues sets the keys present in data (a values file) on v; keys absent keep their
// value. An unknown key or a value of the wrong type is an error.
func MergeValues(v *Values, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	// encoding/json matches keys case-insensitively; check them exactly first.
	var given any
	if err := yaml.Unmarshal(data, &given); err != nil {
		return errors.New(cleanYAMLError(err))
	}
	schema, err := toTree(DefaultValues())
	if err != nil {
		return err
	}
	if err := checkKeys(given, schema, ""); err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		return fmt.Errorf("%s; the keys are those of `mesh install --show-values`", cleanYAMLError(err))
	}
	return nil
}

func toTree(v Values) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	err = json.Unmarshal(raw, &tree)
	return tree, err
}

// checkKeys reports the first key of given (a parsed values file) that schema lacks.
func checkKeys(given any, schema map[string]any, path string) error {
	if given == nil {
		return nil
	}
	m, ok := given.(map[string]any)
	if !ok {
		where := path
		if where == "" {
			where = "the values file"
		}
		return fmt.Errorf("%s is a %T, not a mapping of values", where, given)
	}
	for key, value := range m {
		full := strings.TrimPrefix(path+"."+key, ".")
		want, known := schema[key]
		if !known {
			return fmt.Errorf("unknown field %q; the keys are those of `mesh install --show-values`", full)
		}
		if sub, isGroup := want.(map[string]any); isGroup {
			if err := checkKeys(value, sub, full); err != nil {
				return err
			}
		}
	}
	return nil
}

// Set sets one value by its dotted path (proxy.logLevel=debug). The value is taken as a
// string for string fields and parsed as YAML otherwise (replicas=2).
func (v *Values) Set(assignment string) error {
	path, value, ok := strings.Cut(assignment, "=")
	path = strings.TrimSpace(path)
	if !ok || path == "" {
		return fmt.Errorf("%q is not key=value; write it like proxy.logLevel=debug", assignment)
	}
	// Walk the current values as a generic tree to find the field and its type.
	tree, err := toTree(*v)
	if err != nil {
		return err
	}
	keys := strings.Split(path, ".")
	node := tree
	for i, key := range keys {
		current, exists := node[key]
		if !exists {
			return fmt.Errorf("%s: no such value (at %q); see `mesh install --show-values`", path, strings.Join(keys[:i+1], "."))
		}
		if i == len(keys)-1 {
			switch current := current.(type) {
			case map[string]any:
				return fmt.Errorf("%s is a group of values; set one of its keys, like %s.%s", path, path, firstKey(current))
			case string:
				node[key] = value
			default:
				var parsed any
				if err := yaml.Unmarshal([]byte(value), &parsed); err != nil {
					return fmt.Errorf("%s=%s: %s", path, value, cleanYAMLError(err))
				}
				node[key] = parsed
			}
			break
		}
		next, ok := current.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s is not a group of values", path, strings.Join(keys[:i+1], "."))
		}
		node = next
	}
	raw, err := json.Marshal(tree)
	if err != nil {
		return err
	}
	var next Values
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&next); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("%s=%s: want a %s", path, value, typeErr.Type.String())
		}
		return fmt.Errorf("%s=%s: %w", path, value, err)
	}
	*v = next
	return nil
}

func firstKey(m map[string]any) string {
	first := ""
	for k := range m {
		if first == "" || k < first {
			first = k
		}
	}
	return first
}

func cleanYAMLError(err error) string {
	msg := err.Error()
	for _, prefix := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: "} {
		msg = strings.ReplaceAll(msg, prefix, "")
	}
	return msg
}

// YAML returns every value as YAML (keys sorted), as --show-values prints them.
func (v *Values) YAML() ([]byte, error) {
	return yaml.Marshal(v)
}

// StoredYAML returns the values as the lightmesh-config ConfigMap holds them: like YAML,
// but without the values added after the first release (highAvailability, the add-ons,
// tracing, ingress, stats, proxy.schedulerPoll, proxy.maxInFlightRequests) while they have
// their defaults, so that controllers of earlier versions, which read the
// ConfigMap strictly, still read it during an upgrade. ParseValues fills them back in.
func (v *Values) StoredYAML() ([]byte, error) {
	tree, err := toTree(*v)
	if err != nil {
		return nil, err
	}
	defaults := DefaultValues()
	if !v.HighAvailability {
		delete(tree, "highAvailability")
	}
	if v.Tracing == defaults.Tracing {
		delete(tree, "tracing")
	}
	if v.Ingress == defaults.Ingress {
		delete(tree, "ingress")
	}
	if v.Stats == defaults.Stats {
		delete(tree, "stats")
	}
	if proxy, ok := tree["proxy"].(map[string]any); ok {
		if v.Proxy.SchedulerPoll == defaults.Proxy.SchedulerPoll {
			delete(proxy, "schedulerPoll")
		}
		if v.Proxy.MaxInFlightRequests == defaults.Proxy.MaxInFlightRequests {
			delete(proxy, "maxInFlightRequests")
		}
	}
	for key, pair := range map[string][2]AddonValues{
		"prometheus": {v.Prometheus, defaults.Prometheus},
		"grafana":    {v.Grafana, defaults.Grafana},
		"jaeger":     {v.Jaeger, defaults.Jaeger},
	} {
		if pair[0] == pair[1] {
			delete(tree, key)
		}
	}
	return yaml.Marshal(tree)
}
