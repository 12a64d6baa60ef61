package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lightmesh/lightmesh/internal/tap"
)

// workload says where a kind keeps its pod template: the API group it must come from and the
// path from the object to the template (none for a Pod, whose own metadata and spec count).
type workload struct {
	group string
	path  []string
}

var workloads = map[string]workload{
	"Pod":                   {group: "", path: nil},
	"ReplicationController": {group: "", path: []string{"spec", "template"}},
	"Deployment":            {group: "apps", path: []string{"spec", "template"}},
	"StatefulSet":           {group: "apps", path: []string{"spec", "template"}},
	"DaemonSet":             {group: "apps", path: []string{"spec", "template"}},
	"ReplicaSet":            {group: "apps", path: []string{"spec", "template"}},
	"Job":                   {group: "batch", path: []string{"spec", "template"}},
	"CronJob":               {group: "batch", path: []string{"spec", "jobTemplate", "spec", "template"}},
}

// apiGroup is the group of an apiVersion ("apps/v1" is "apps", "v1" is "").
func apiGroup(apiVersion string) string {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		return ""
	}
	return group
}

// workloadOf returns where obj keeps its pod template, and false for kinds without one.
func workloadOf(apiVersion, kind string) (workload, bool) {
	w, ok := workloads[kind]
	if !ok || apiGroup(apiVersion) != w.group {
		return workload{}, false
	}
	return w, true
}

// podTemplate is a pod template inside an object: its metadata (nil when absent) and spec.
type podTemplate struct {
	// holder is the map that holds "metadata" and "spec": the template, or the Pod itself.
	holder map[string]any
	// path is the template's field path, for messages ("spec.template").
	path  string
	isPod bool
	spec  map[string]any
	typed corev1.PodSpec
}

// findPodTemplate walks obj to its pod template and decodes its spec.
func findPodTemplate(obj map[string]any, w workload) (*podTemplate, error) {
	holder := obj
	for i, field := range w.path {
		next, ok := holder[field].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("has no %s (a mapping); add the pod template", strings.Join(w.path[:i+1], "."))
		}
		holder = next
	}
	path := strings.Join(w.path, ".")
	specPath := "spec"
	if path != "" {
		specPath = path + ".spec"
	}
	spec, ok := holder["spec"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("has no %s (a mapping): add the pod spec", specPath)
	}
	if md, present := holder["metadata"]; present {
		if _, ok := md.(map[string]any); !ok && md != nil {
			return nil, fmt.Errorf("%s is not a mapping", joinPath(path, "metadata"))
		}
	}
	t := &podTemplate{holder: holder, path: path, isPod: len(w.path) == 0, spec: spec}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", specPath, err)
	}
	if err := json.Unmarshal(raw, &t.typed); err != nil {
		return nil, fmt.Errorf("%s is not a valid pod spec: %w; fix the manifest", specPath, err)
	}
	return t, nil
}

func joinPath(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// metadata returns the template's metadata map, creating it when create is set.
func (t *podTemplate) metadata(create bool) map[string]any {
	md, _ := t.holder["metadata"].(map[string]any)
	if md == nil && create {
		md = map[string]any{}
		t.holder["metadata"] = md
	}
	return md
}

// stringMap reads metadata[field] (annotations or labels) as strings.
func (t *podTemplate) stringMap(field string) (map[string]string, error) {
	md := t.metadata(false)
	if md == nil || md[field] == nil {
		return map[string]string{}, nil
	}
	raw, ok := md[field].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a mapping", joinPath(t.path, "metadata."+field))
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s %q has a %s value; quote it, annotation and label values are strings", joinPath(t.path, "metadata."+field), k, jsonType(v))
		}
		out[k] = s
	}
	return out, nil
}

// setString sets metadata[field][key] = value, creating maps as needed.
func (t *podTemplate) setString(field, key, value string) {
	md := t.metadata(true)
	m, _ := md[field].(map[string]any)
	if m == nil {
		m = map[string]any{}
		md[field] = m
	}
	m[key] = value
}

// deleteString removes metadata[field][key], then the map and the template's metadata when
// they are left empty (a Pod's own metadata always stays).
func (t *podTemplate) deleteString(field, key string) bool {
	md := t.metadata(false)
	if md == nil {
		return false
	}
	m, _ := md[field].(map[string]any)
	if _, ok := m[key]; !ok {
		return false
	}
	delete(m, key)
	if len(m) == 0 {
		delete(md, field)
	}
	if len(md) == 0 && !t.isPod {
		delete(t.holder, "metadata")
	}
	return true
}

// hasContainer reports whether the spec has a container or init container called name.
func (t *podTemplate) hasContainer(name string) bool {
	for _, list := range [][]corev1.Container{t.typed.InitContainers, t.typed.Containers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	return slices.ContainsFunc(t.typed.EphemeralContainers, func(c corev1.EphemeralContainer) bool { return c.Name == name })
}

func (t *podTemplate) hasVolume(name string) bool {
	return slices.ContainsFunc(t.typed.Volumes, func(v corev1.Volume) bool { return v.Name == name })
}

// isInjected reports whether the template already carries lightmesh's proxy.
func (t *podTemplate) isInjected(annotations map[string]string) bool {
	_, versioned := annotations[AnnotationProxyVersion]
	return versioned || t.hasContainer(ProxyContainerName)
}

// addSidecar puts the init container and the proxy first among the init containers and
// appends the token volume.
func (t *podTemplate) addSidecar(cfg *Config, ingress bool) error {
	initContainer, err := toJSONValue(ProxyInitContainer(cfg))
	if err != nil {
		return err
	}
	proxy, err := toJSONValue(ProxyContainer(cfg, ingress))
	if err != nil {
		return err
	}
	volume, err := toJSONValue(TokenVolume())
	if err != nil {
		return err
	}
	existing, _ := t.spec["initContainers"].([]any)
	t.spec["initContainers"] = append([]any{initContainer, proxy}, existing...)
	volumes, _ := t.spec["volumes"].([]any)
	t.spec["volumes"] = append(volumes, volume)
	t.setString("annotations", AnnotationProxyVersion, cfg.Version)
	t.setString("annotations", AnnotationInjectedBy, cfg.InjectedBy)
	t.setString("labels", LabelControlPlaneNS, cfg.ControlPlaneNamespace)
	return nil
}

// removeSidecar takes away what addSidecar added; it reports whether anything was removed.
func (t *podTemplate) removeSidecar() bool {
	removed := false
	for _, field := range []string{"initContainers", "containers"} {
		if removeNamed(t.spec, field, InitContainerName, ProxyContainerName) && field == "initContainers" {
			removed = true
		}
	}
	if removeNamed(t.spec, "volumes", TokenVolumeName) {
		removed = true
	}
	for _, key := range []string{AnnotationProxyVersion, AnnotationInjectedBy} {
		if t.deleteString("annotations", key) {
			removed = true
		}
	}
	if t.deleteString("labels", LabelControlPlaneNS) {
		removed = true
	}
	return removed
}

// removeNamed drops the items of spec[field] named one of names, and the field when it is
// left empty (injection creates it when absent). The "containers" field is never dropped.
func removeNamed(spec map[string]any, field string, names ...string) bool {
	list, ok := spec[field].([]any)
	if !ok {
		return false
	}
	kept := list[:0:0]
	for _, item := range list {
		if m, ok := item.(map[string]any); ok && slices.Contains(names, fmt.Sprint(m["name"])) {
			continue
		}
		kept = append(kept, item)
	}
	if len(kept) == len(list) {
		return false
	}
	if len(kept) == 0 && field != "containers" {
		delete(spec, field)
	} else {
		spec[field] = kept
	}
	return true
}

// ProxyInitContainer is the mesh-init init container for cfg.
func ProxyInitContainer(cfg *Config) corev1.Container {
	inbound := Ports{{First: ControlPort, Last: ControlPort}, {First: AdminPort, Last: AdminPort}}
	inbound = append(inbound, cfg.SkipInboundPorts...)
	args := []string{
		"--incoming-proxy-port", strconv.Itoa(InboundPort),
		"--outgoing-proxy-port", strconv.Itoa(OutboundPort),
		"--proxy-uid", strconv.Itoa(ProxyUID),
		"--inbound-ports-to-ignore", inbound.String(),
	}
	if len(cfg.SkipOutboundPorts) > 0 {
		args = append(args, "--outbound-ports-to-ignore", cfg.SkipOutboundPorts.String())
	}
	if len(cfg.SkipSubnets) > 0 {
		args = append(args, "--subnets-to-ignore", SubnetsString(cfg.SkipSubnets))
		for _, s := range cfg.SkipSubnets {
			if s.Addr().Is6() {
				args = append(args, "--ipv6")
				break
			}
		}
	}
	// Not root: the image's iptables binaries carry NET_ADMIN and NET_RAW as file
	// capabilities, which need privilege escalation allowed (no_new_privs ignores them).
	nobody := int64(ProxyInitUID)
	return corev1.Container{
		Name:            InitContainerName,
		Image:           cfg.ProxyInitImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args:            args,
		Resources:       *cfg.ProxyInitResources.DeepCopy(),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &nobody,
			RunAsNonRoot:             ptr(true),
			AllowPrivilegeEscalation: ptr(true),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// ProxyContainer is the mesh-proxy native sidecar for cfg.
func ProxyContainer(cfg *Config, ingress bool) corev1.Container {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	value := func(name, v string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: v} }
	svc := func(name string, port int) string {
		return fmt.Sprintf("%s.%s.svc.%s:%d", name, cfg.ControlPlaneNamespace, cfg.ClusterDomain, port)
	}
	env := []corev1.EnvVar{
		field(EnvPodName, "metadata.name"),
		field(EnvPodNamespace, "metadata.namespace"),
		field(EnvPodIP, "status.podIP"),
		field(EnvServiceAccount, "spec.serviceAccountName"),
		value(EnvLogLevel, cfg.LogLevel),
		value(EnvLogFormat, cfg.LogFormat),
		value(EnvInboundAddr, fmt.Sprintf("0.0.0.0:%d", InboundPort)),
		value(EnvOutboundAddr, fmt.Sprintf("127.0.0.1:%d", OutboundPort)),
		value(EnvAdminAddr, fmt.Sprintf("0.0.0.0:%d", AdminPort)),
	}
	if cfg.SchedulerPoll != nil {
		env = append(env, value(EnvSchedulerPoll, strconv.FormatBool(*cfg.SchedulerPoll)))
	}
	if cfg.MaxInFlightRequests > 0 {
		env = append(env, value(EnvMaxInFlightRequests, strconv.Itoa(cfg.MaxInFlightRequests)))
	}
	if len(cfg.OpaquePorts) > 0 {
		env = append(env, value(EnvInboundPortsOpaque, cfg.OpaquePorts.String()))
	}
	if ingress {
		env = append(env, value(EnvIngressMode, "true"))
	}
	env = append(env,
		value(EnvDestinationAddr, svc("destination", DestinationPort)),
		value(EnvIdentityAddr, svc("identity", IdentityPort)),
		value(EnvIdentityTokenFile, TokenFile),
		value(EnvTrustDomain, cfg.TrustDomain),
		value(EnvTrustAnchors, cfg.TrustAnchorsPEM),
	)
	if t := cfg.Tracing; t != nil {
		env = append(env,
			// The spans' service: the pod's app label (Istio's canonical service), else the
			// proxy falls back to its ServiceAccount.
			field(EnvTracingServiceName, "metadata.labels['app']"),
			value(EnvTracingSamplerType, t.SamplerType),
			value(EnvTracingSamplerParam, t.SamplerParam),
			value(EnvTracingAgentAddr, t.LocalAgentHostPort),
			value(EnvTracingLogSpans, strconv.FormatBool(t.LogSpans)),
		)
	}
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AdminPort)}},
			TimeoutSeconds:   1,
			PeriodSeconds:    period,
			SuccessThreshold: 1,
			FailureThreshold: failures,
		}
	}
	uid := int64(ProxyUID)
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Container{
		Name:            ProxyContainerName,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		RestartPolicy:   &always,
		Ports: []corev1.ContainerPort{
			{Name: InboundPortName, ContainerPort: InboundPort, Protocol: corev1.ProtocolTCP},
			{Name: AdminPortName, ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
			{Name: tap.ProxyPortName, ContainerPort: tap.ProxyPort, Protocol: corev1.ProtocolTCP},
		},
		Env:       env,
		Resources: *cfg.ProxyResources.DeepCopy(),
		VolumeMounts: []corev1.VolumeMount{
			{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true},
		},
		// The startup probe holds back the next init containers and the application until
		// the proxy has its certificate: up to 120 s.
		StartupProbe:   probe(ReadyPath, 1, 120),
		ReadinessProbe: probe(ReadyPath, 10, 3),
		LivenessProbe:  probe(LivePath, 10, 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &uid,
			RunAsNonRoot:             ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// TokenVolume is the projected ServiceAccount token the proxy presents to identity.
func TokenVolume() corev1.Volume {
	expiration := int64(TokenExpirationSeconds)
	return corev1.Volume{
		Name: TokenVolumeName,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience:          TokenAudience,
				ExpirationSeconds: &expiration,
				Path:              TokenFileName,
			}}},
		}},
	}
}

func ptr[T any](v T) *T { return &v }

// toJSONValue converts a typed object to the generic form documents are parsed into
// (maps, slices, json.Number), so both marshal and compare alike.
func toJSONValue(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64, int64, int:
		return "number"
	case string:
		return "string"
	case []any:
		return "list"
	case map[string]any:
		return "mapping"
	}
	return fmt.Sprintf("%T", v)
}
