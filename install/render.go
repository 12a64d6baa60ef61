package install

import (
	"bytes"
	"encoding/json"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/internal/version"
)

// Names of the installed objects and of what the controller reads from them.
const (
	// ConfigMapName holds the installation's values under ConfigKey; `mesh inject` and the
	// webhook read it.
	ConfigMapName = "lightmesh-config"
	ConfigKey     = "config.yaml"
	// TrustRootsConfigMapName holds the trust anchors under TrustRootsKey.
	TrustRootsConfigMapName = "lightmesh-identity-trust-roots"
	TrustRootsKey           = "ca-bundle.crt"
	// IssuerSecretName is the issuer's kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt).
	IssuerSecretName = "lightmesh-identity-issuer"

	// WebhookSecretName is the injector's serving certificate (kubernetes.io/tls: tls.crt,
	// tls.key, ca.crt).
	WebhookSecretName = "lightmesh-webhook-tls"
	// ConfigReaderName is the Role (and RoleBinding) that lets the controller read
	// lightmesh-config in its own namespace.
	ConfigReaderName = "lightmesh-controller-config-reader"

	ControllerName = "lightmesh-controller"
	// ControllerUID is the controller's user (2102 is the proxy's).
	ControllerUID = 2103

	TrustAnchorsDir  = "/var/run/lightmesh/identity/trust-anchors"
	TrustAnchorsFile = TrustAnchorsDir + "/ca.crt"
	IssuerDir        = "/var/run/lightmesh/identity/issuer"
	WebhookTLSDir    = "/var/run/lightmesh/webhook/tls"
	// WebhookPath is the injector's admission endpoint.
	WebhookPath = "/inject"

	IdentityPort      = inject.IdentityPort
	DestinationPort   = inject.DestinationPort
	WebhookPort       = 443
	WebhookTargetPort = 8443
	StatsPort         = 8085
	AdminPort         = 9990
	InjectorAdminPort = 9995
	// DestinationAdminPort serves the destination service's /live, /ready and /metrics.
	DestinationAdminPort = 9996
	// StatsAdminPort serves the stats service's /live, /ready and /metrics.
	StatsAdminPort = 9997
	// WebhookTimeoutSeconds bounds each call of the API server to the injector.
	WebhookTimeoutSeconds = 10
	componentLabel        = "lightmesh.io/control-plane-component"
	controllerSelector    = "controller"
)

// Render returns the control plane's objects for resolved, valid values and identity
// material, in apply order: namespace, service account, RBAC, configuration, identity and
// webhook certificates, services, deployment, and last the webhook configuration (so the API
// server calls the injector only once it can exist). The same input always renders the same objects.
func Render(v Values, id Identity) ([]map[string]any, error) {
	return RenderWith(v, id, RenderOptions{})
}

// RenderOptions change what Render renders.
type RenderOptions struct {
	// SkipCRDs names CRDs to leave out: the cluster has them and they are not ours (Istio,
	// the upstream Gateway API).
	SkipCRDs map[string]bool
}

// RenderWith is Render with options. The CRDs come first; no object in the output is a
// custom resource, so one `kubectl apply` of it works on an empty cluster.
func RenderWith(v Values, id Identity, opts RenderOptions) ([]map[string]any, error) {
	v.Resolve()
	v.Identity.TrustAnchorsPEM = string(id.TrustAnchorsPEM)
	if err := v.Validate(); err != nil {
		return nil, err
	}
	configYAML, err := v.StoredYAML()
	if err != nil {
		return nil, err
	}
	webhookTLS, err := WebhookCertificate(id, v.Namespace, v.ClusterDomain)
	if err != nil {
		return nil, err
	}
	ns := v.Namespace
	typed := []any{
		namespace(v),
		&corev1.ServiceAccount{
			TypeMeta:   typeMeta("v1", "ServiceAccount"),
			ObjectMeta: objectMeta(v, ControllerName, "controller"),
		},
		clusterRole(v),
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: clusterObjectMeta(v, clusterRoleName(ns), "controller"),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRoleName(ns)},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerName, Namespace: ns}},
		},
		&rbacv1.Role{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
			ObjectMeta: objectMeta(v, ConfigReaderName, "controller"),
			// The injector reads the installation's values, and nothing else of its namespace.
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{ConfigMapName}, Verbs: []string{"get"}}},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
			ObjectMeta: objectMeta(v, ConfigReaderName, "controller"),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: ConfigReaderName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerName, Namespace: ns}},
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(v, ConfigMapName, "controller"),
			Data:       map[string]string{ConfigKey: string(configYAML)},
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(v, TrustRootsConfigMapName, "identity"),
			Data:       map[string]string{TrustRootsKey: string(id.TrustAnchorsPEM)},
		},
		&corev1.Secret{
			TypeMeta:   typeMeta("v1", "Secret"),
			ObjectMeta: objectMeta(v, IssuerSecretName, "identity"),
			Type:       corev1.SecretTypeTLS,
			Data: map[string][]byte{
				corev1.TLSCertKey:       id.IssuerCertificatePEM,
				corev1.TLSPrivateKeyKey: id.IssuerKeyPEM,
				"ca.crt":                id.TrustAnchorsPEM,
			},
		},
		&corev1.Secret{
			TypeMeta:   typeMeta("v1", "Secret"),
			ObjectMeta: objectMeta(v, WebhookSecretName, "injector"),
			Type:       corev1.SecretTypeTLS,
			Data: map[string][]byte{
				corev1.TLSCertKey:       webhookTLS.CertificatePEM,
				corev1.TLSPrivateKeyKey: webhookTLS.KeyPEM,
				"ca.crt":                webhookTLS.CABundlePEM,
			},
		},
		service(v, "identity", "grpc", IdentityPort, IdentityPort),
		service(v, "destination", "grpc", DestinationPort, DestinationPort),
		service(v, "webhook", "https", WebhookPort, WebhookTargetPort),
		service(v, "stats", "http", StatsPort, StatsPort),
		deployment(v),
	}
	if v.HighAvailability {
		typed = append(typed, podDisruptionBudget(v))
	}
	extra, err := addons(v)
	if err != nil {
		return nil, err
	}
	typed = append(typed, extra...)
	if v.Ingress.Enabled {
		objs, err := ingress(v)
		if err != nil {
			return nil, err
		}
		typed = append(typed, objs...)
	}
	typed = append(typed, mutatingWebhook(v, webhookTLS.CABundlePEM))
	objects := CRDObjects(opts.SkipCRDs)
	for _, o := range typed {
		m, err := toMap(o)
		if err != nil {
			return nil, err
		}
		objects = append(objects, m)
	}
	return objects, nil
}

// WriteYAML encodes objects as a YAML stream.
func WriteYAML(objects []map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	for _, o := range objects {
		data, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	return buf.Bytes(), nil
}

// WriteJSON encodes objects as one indented v1 List.
func WriteJSON(objects []map[string]any) ([]byte, error) {
	list := map[string]any{"apiVersion": "v1", "kind": "List", "items": objects}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func clusterRoleName(ns string) string { return "lightmesh-" + ns + "-controller" }

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func commonLabels(component string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/part-of":   "lightmesh",
		"app.kubernetes.io/version":   version.Version,
		"app.kubernetes.io/component": component,
	}
}

func objectMeta(v Values, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: v.Namespace, Labels: commonLabels(component)}
}

func clusterObjectMeta(v Values, name, component string) metav1.ObjectMeta {
	labels := commonLabels(component)
	labels[inject.LabelControlPlaneNS] = v.Namespace
	return metav1.ObjectMeta{Name: name, Labels: labels}
}

func namespace(v Values) *corev1.Namespace {
	labels := commonLabels("control-plane")
	// The controller runs as the restricted Pod Security Standard asks; nothing else should
	// run here.
	labels["pod-security.kubernetes.io/enforce"] = "restricted"
	return &corev1.Namespace{
		TypeMeta: typeMeta("v1", "Namespace"),
		ObjectMeta: metav1.ObjectMeta{
			Name:        v.Namespace,
			Labels:      labels,
			Annotations: map[string]string{inject.AnnotationInject: inject.InjectDisabled},
		},
	}
}

// clusterRole is everything the controller may do, and nothing more: review proxies'
// tokens (identity), watch what destination and policy serve, record events, and read the
// Istio and Gateway API resources it translates.
func clusterRole(v Values) *rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	writeStatus := []string{"update", "patch"}
	return &rbacv1.ClusterRole{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: clusterObjectMeta(v, clusterRoleName(v.Namespace), "controller"),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "services", "namespaces"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			// client-go's event recorder patches an event when it repeats.
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			{APIGroups: []string{"networking.istio.io"}, Resources: []string{"gateways", "virtualservices", "destinationrules"}, Verbs: read},
			{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications", "authorizationpolicies"}, Verbs: read},
			{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes", "gateways"}, Verbs: read},
			// The policy watcher reports unsupported fields in the resources' status, and
			// may change nothing else of them.
			{APIGroups: []string{"networking.istio.io"}, Resources: []string{"gateways/status", "virtualservices/status", "destinationrules/status"}, Verbs: writeStatus},
			{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications/status", "authorizationpolicies/status"}, Verbs: writeStatus},
			{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes/status"}, Verbs: writeStatus},
		},
	}
}

func selectorLabels() map[string]string {
	return map[string]string{componentLabel: controllerSelector}
}

func service(v Values, name, portName string, port, targetPort int32) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: objectMeta(v, name, "controller"),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selectorLabels(),
			Ports: []corev1.ServicePort{{
				Name:       portName,
				Port:       port,
				TargetPort: intstr.FromInt32(targetPort),
				Protocol:   corev1.ProtocolTCP,
			}},
		},
	}
}

func deployment(v Values) *appsv1.Deployment {
	podLabels := commonLabels("controller")
	podLabels[componentLabel] = controllerSelector
	yes := true
	identityMounts := []corev1.VolumeMount{
		{Name: "trust-anchors", MountPath: TrustAnchorsDir, ReadOnly: true},
		{Name: "issuer", MountPath: IssuerDir, ReadOnly: true},
	}
	identity := controllerContainer(v, "identity", "identity", IdentityPort, "admin", AdminPort, []string{
		"--trust-anchors-file", TrustAnchorsFile,
		"--issuer-dir", IssuerDir,
		"--addr", ":" + strconv.Itoa(IdentityPort),
		"--admin-addr", ":" + strconv.Itoa(AdminPort),
		"--trust-domain", v.Identity.TrustDomain,
		// The proxies check the identity service's certificate for the host of
		// MESH_PROXY_IDENTITY_ADDR.
		"--serving-name", "identity." + v.Namespace + ".svc." + v.ClusterDomain,
	}, identityMounts...)
	// The identity service records issuer problems as Events on its own Pod.
	identity.Env = []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("POD_UID", "metadata.uid"),
	}
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: objectMeta(v, ControllerName, "controller"),
		Spec: appsv1.DeploymentSpec{
			Replicas: &v.Controller.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels()},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{inject.AnnotationInject: inject.InjectDisabled},
				},
				Spec: corev1.PodSpec{
					Affinity:           controllerAffinity(v),
					ServiceAccountName: ControllerName,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   &yes,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{
						identity,
						controllerContainer(v, "injector", "webhook", WebhookTargetPort, "injector-admin", InjectorAdminPort, []string{
							"--addr", ":" + strconv.Itoa(WebhookTargetPort),
							"--admin-addr", ":" + strconv.Itoa(InjectorAdminPort),
							"--tls-dir", WebhookTLSDir,
							"--control-plane-namespace", v.Namespace,
						}, corev1.VolumeMount{Name: "webhook-tls", MountPath: WebhookTLSDir, ReadOnly: true}),
						controllerContainer(v, "destination", "destination", DestinationPort, "dest-admin", DestinationAdminPort, []string{
							"--addr", ":" + strconv.Itoa(DestinationPort),
							"--admin-addr", ":" + strconv.Itoa(DestinationAdminPort),
							"--trust-anchors-file", TrustAnchorsFile,
							"--issuer-dir", IssuerDir,
							"--trust-domain", v.Identity.TrustDomain,
							"--control-plane-namespace", v.Namespace,
							"--cluster-domain", v.ClusterDomain,
						}, identityMounts...),
						// Scrapes the meshed pods' proxies and answers mesh stat (through the
						// API server's service proxy, so RBAC decides who may read it).
						controllerContainer(v, "stats", "stats", StatsPort, "stats-admin", StatsAdminPort, statsArgs(v), identityMounts...),
					},
					Volumes: []corev1.Volume{
						{Name: "trust-anchors", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: TrustRootsConfigMapName},
							Items:                []corev1.KeyToPath{{Key: TrustRootsKey, Path: "ca.crt"}},
						}}},
						{Name: "issuer", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: IssuerSecretName,
						}}},
						{Name: "webhook-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: WebhookSecretName,
						}}},
					},
				},
			},
		},
	}
}

// controllerAffinity spreads the replicas of a highly available controller over nodes
// (preferred, so a one-node cluster still runs them all).
func controllerAffinity(v Values) *corev1.Affinity {
	if !v.HighAvailability {
		return nil
	}
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: selectorLabels()},
				TopologyKey:   corev1.LabelHostname,
			},
		}},
	}}
}

// podDisruptionBudget lets voluntary disruptions (drains) take one controller pod at a time.
func podDisruptionBudget(v Values) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: objectMeta(v, ControllerName, "controller"),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &one,
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels()},
		},
	}
}

// WebhookConfigurationName is the MutatingWebhookConfiguration of the installation in
// namespace (cluster-scoped, so it carries the namespace).
func WebhookConfigurationName(namespace string) string {
	return "lightmesh-proxy-injector-" + namespace
}

// mutatingWebhook sends the creation of every Pod outside kube-system and the control
// plane's namespace to the injector, which decides from the lightmesh.io/inject annotations
// of the pod and its namespace.
func mutatingWebhook(v Values, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	path := WebhookPath
	port := int32(WebhookPort)
	failurePolicy := admissionregistrationv1.FailurePolicyType(v.Webhook.FailurePolicy)
	sideEffects := admissionregistrationv1.SideEffectClassNone
	timeout := int32(WebhookTimeoutSeconds)
	scope := admissionregistrationv1.NamespacedScope
	matchPolicy := admissionregistrationv1.Equivalent
	reinvocation := admissionregistrationv1.NeverReinvocationPolicy
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   typeMeta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		ObjectMeta: clusterObjectMeta(v, WebhookConfigurationName(v.Namespace), "injector"),
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "proxy-injector." + v.Namespace + ".lightmesh.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service:  &admissionregistrationv1.ServiceReference{Namespace: v.Namespace, Name: "webhook", Path: &path, Port: &port},
				CABundle: caBundle,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
					Scope:       &scope,
				},
			}},
			FailurePolicy: &failurePolicy,
			MatchPolicy:   &matchPolicy,
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key:      corev1.LabelMetadataName,
				Operator: metav1.LabelSelectorOpNotIn,
				Values:   []string{metav1.NamespaceSystem, v.Namespace},
			}}},
			SideEffects:             &sideEffects,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &reinvocation,
		}},
	}
}

// toMap turns a typed object into its generic form without the fields typed objects always
// carry (metadata.creationTimestamp: null, status, an empty spec), so the output shows only
// what we set.
func toMap(o any) (map[string]any, error) {
	raw, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if spec, ok := m["spec"].(map[string]any); ok && len(spec) == 0 {
		delete(m, "spec")
	}
	pruneCreationTimestamps(m)
	return m, nil
}

func pruneCreationTimestamps(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if k == "creationTimestamp" && child == nil {
				delete(t, k)
				continue
			}
			pruneCreationTimestamps(child)
		}
	case []any:
		for _, child := range t {
			pruneCreationTimestamps(child)
		}
	}
}

// fieldEnv is an environment variable filled from the pod's own fields (downward API).
func fieldEnv(name, fieldPath string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: fieldPath},
	}}
}

// controllerContainer is one service of the controller pod: `mesh-controller SERVICE ARGS
// --log-level L`, serving on port (named portName), with its admin server (/live, /ready,
// /metrics: the probes) on adminPort.
func controllerContainer(v Values, service, portName string, port int32, adminName string, adminPort int32,
	args []string, mounts ...corev1.VolumeMount) corev1.Container {
	return corev1.Container{
		Name:            service,
		Image:           v.Controller.Image,
		ImagePullPolicy: corev1.PullPolicy(v.ImagePullPolicy),
		Args:            append(append([]string{service}, args...), "--log-level", v.Controller.LogLevel),
		Ports: []corev1.ContainerPort{
			{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP},
			{Name: adminName, ContainerPort: adminPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe:           probe("/ready", adminName),
		LivenessProbe:            probe("/live", adminName),
		Resources:                requirements(v.Controller.Resources),
		SecurityContext:          securityContext(),
		VolumeMounts:             mounts,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// probe is an HTTP GET probe of a controller service's admin server.
func probe(path, port string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(port)}},
		TimeoutSeconds:   1,
		PeriodSeconds:    10,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
}

// securityContext is every controller container's: non-root, read-only, no capabilities.
func securityContext() *corev1.SecurityContext {
	uid, yes := int64(ControllerUID), true
	return &corev1.SecurityContext{
		RunAsUser:                &uid,
		RunAsGroup:               &uid,
		RunAsNonRoot:             &yes,
		AllowPrivilegeEscalation: new(bool),
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// statsArgs are the stats service's flags: with stats.prometheusUrl it reads Prometheus.
func statsArgs(v Values) []string {
	args := []string{
		"--addr", ":" + strconv.Itoa(StatsPort),
		"--admin-addr", ":" + strconv.Itoa(StatsAdminPort),
		"--scrape-interval", "10s",
		// The tap API taps the proxies as the controller's identity, certified with the issuer.
		"--issuer-dir", IssuerDir,
		"--trust-anchors-file", TrustAnchorsFile,
		"--trust-domain", v.Identity.TrustDomain,
		"--control-plane-namespace", v.Namespace,
	}
	if v.Stats.PrometheusURL != "" {
		args = append(args, "--prometheus-url", v.Stats.PrometheusURL)
	}
	return args
}
