package install

import (
	"encoding/json"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/inject"
)

// Ports and names of the add-ons.
const (
	PrometheusName  = "lightmesh-prometheus"
	PrometheusPort  = 9090
	GrafanaName     = "lightmesh-grafana"
	GrafanaPort     = 3000
	JaegerName      = "lightmesh-jaeger"
	JaegerAgentPort = 6831
	JaegerQueryPort = 16686
	JaegerHTTPPort  = 14268
	JaegerOTLPPort  = 4317
	JaegerAdminPort = 14269
	// ProxyMetricsPath is where the proxies' admin server serves Prometheus metrics.
	ProxyMetricsPath = "/metrics"
)

// The users the add-on images run as (their images' own non-root users).
const (
	prometheusUID = 65534
	grafanaUID    = 472
	jaegerUID     = 10001
)

// addons renders the enabled add-ons, each its Services, configuration and Deployment.
func addons(v Values) ([]any, error) {
	var out []any
	if v.Prometheus.Enabled {
		objs, err := prometheus(v)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	if v.Grafana.Enabled {
		objs, err := grafana(v)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	if v.Jaeger.Enabled {
		objs, err := jaeger(v)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// PrometheusConfig is prometheus.yml in the seed's form (global scrape_interval,
// kubernetes_sd_configs, relabel_configs with keep): it scrapes the admin port of every
// proxy of this installation, found by the pods' lightmesh.io/proxy-version annotation and
// lightmesh.io/control-plane-ns label.
func PrometheusConfig(v Values) ([]byte, error) {
	relabel := func(action, regex string, sources ...string) map[string]any {
		m := map[string]any{"source_labels": sources, "action": action}
		if regex != "" {
			m["regex"] = regex
		}
		return m
	}
	config := map[string]any{
		"global": map[string]any{"scrape_interval": "15s"},
		"scrape_configs": []any{map[string]any{
			"job_name":     "lightmesh-proxy",
			"metrics_path": ProxyMetricsPath,
			"kubernetes_sd_configs": []any{map[string]any{
				"role": "pod",
			}},
			"relabel_configs": []any{
				relabel("keep", ".+", "__meta_kubernetes_pod_annotation_"+promName(inject.AnnotationProxyVersion)),
				relabel("keep", v.Namespace, "__meta_kubernetes_pod_label_"+promName(inject.LabelControlPlaneNS)),
				relabel("keep", inject.AdminPortName, "__meta_kubernetes_pod_container_port_name"),
				map[string]any{"source_labels": []string{"__meta_kubernetes_namespace"}, "action": "replace", "target_label": "namespace"},
				map[string]any{"source_labels": []string{"__meta_kubernetes_pod_name"}, "action": "replace", "target_label": "pod"},
				map[string]any{"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
			},
		}},
	}
	return yaml.Marshal(config)
}

// promName is a Kubernetes label or annotation name as Prometheus's service discovery
// writes it (every character outside [a-zA-Z0-9_] becomes _).
func promName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

func addonLabels(name string) (labels, selector map[string]string) {
	labels = commonLabels(name)
	selector = map[string]string{componentLabel: name}
	labels[componentLabel] = name
	return labels, selector
}

// addonDeployment is a one-replica Deployment of an add-on image running as uid.
func addonDeployment(v Values, name, component string, a AddonValues, uid int64, c corev1.Container, volumes []corev1.Volume) *appsv1.Deployment {
	podLabels, selector := addonLabels(component)
	yes := true
	one := int32(1)
	c.Image = a.Image
	c.ImagePullPolicy = corev1.PullPolicy(v.ImagePullPolicy)
	c.Resources = requirements(a.Resources)
	sc := securityContext()
	sc.RunAsUser, sc.RunAsGroup = &uid, &uid
	c.SecurityContext = sc
	c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: objectMeta(v, name, component),
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{inject.AnnotationInject: inject.InjectDisabled}},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   &yes,
						FSGroup:        &uid,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{c},
					Volumes:    volumes,
				},
			},
		},
	}
}

func addonService(v Values, name, component string, ports ...corev1.ServicePort) *corev1.Service {
	_, selector := addonLabels(component)
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: objectMeta(v, name, component),
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: selector, Ports: ports},
	}
}

func tcpPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP}
}

func httpProbe(path string, port int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port)}},
		TimeoutSeconds:   1,
		PeriodSeconds:    10,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
}

func serviceAccount(v Values, name, component string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: objectMeta(v, name, component)}
}

func emptyDir(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func configMapVolume(name, configMap string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: configMap},
	}}}
}

// PrometheusClusterRoleName is the add-on's ClusterRole (and binding) for the installation
// in namespace.
func PrometheusClusterRoleName(namespace string) string {
	return "lightmesh-" + namespace + "-prometheus"
}

func prometheus(v Values) ([]any, error) {
	config, err := PrometheusConfig(v)
	if err != nil {
		return nil, err
	}
	const component = "prometheus"
	configName := PrometheusName + "-config"
	roleName := PrometheusClusterRoleName(v.Namespace)
	container := corev1.Container{
		Name: component,
		Args: []string{
			"--config.file=/etc/prometheus/prometheus.yml",
			"--storage.tsdb.path=/data",
			"--storage.tsdb.retention.time=6h",
			"--web.listen-address=:" + strconv.Itoa(PrometheusPort),
		},
		Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: PrometheusPort, Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: httpProbe("/-/ready", PrometheusPort),
		LivenessProbe:  httpProbe("/-/healthy", PrometheusPort),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: "/etc/prometheus", ReadOnly: true},
			{Name: "data", MountPath: "/data"},
		},
	}
	return []any{
		serviceAccount(v, PrometheusName, component),
		// Service discovery lists the pods of every namespace; nothing else.
		&rbacv1.ClusterRole{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
			ObjectMeta: clusterObjectMeta(v, roleName, component),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
			ObjectMeta: clusterObjectMeta(v, roleName, component),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: roleName},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: PrometheusName, Namespace: v.Namespace}},
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(v, configName, component),
			Data:       map[string]string{"prometheus.yml": string(config)},
		},
		addonService(v, "prometheus", component, tcpPort("http", PrometheusPort)),
		addonDeployment(v, PrometheusName, component, v.Prometheus, prometheusUID, container,
			[]corev1.Volume{configMapVolume("config", configName), emptyDir("data")}),
	}, nil
}

// GrafanaDashboard is the dashboard of the proxies' metrics (request_total,
// response_total, response_latency_ms_bucket, tcp_open_connections) by namespace and pod.
func GrafanaDashboard() ([]byte, error) {
	panel := func(id int, title, unit string, y int, exprs ...string) map[string]any {
		var targets []any
		for i, e := range exprs {
			targets = append(targets, map[string]any{"expr": e, "refId": string(rune('A' + i)), "legendFormat": "{{namespace}}/{{pod}}"})
		}
		return map[string]any{
			"id": id, "type": "timeseries", "title": title,
			"datasource":  map[string]any{"type": "prometheus", "uid": "prometheus"},
			"gridPos":     map[string]any{"h": 8, "w": 12, "x": (id - 1) % 2 * 12, "y": y},
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": unit}, "overrides": []any{}},
			"targets":     targets,
		}
	}
	dashboard := map[string]any{
		"uid":           "lightmesh-proxies",
		"title":         "lightmesh proxies",
		"tags":          []string{"lightmesh"},
		"schemaVersion": 39,
		"time":          map[string]any{"from": "now-15m", "to": "now"},
		"refresh":       "10s",
		"panels": []any{
			panel(1, "Request rate", "reqps", 0, `sum by (namespace, pod) (rate(request_total[1m]))`),
			panel(2, "Success rate", "percentunit", 0,
				`sum by (namespace, pod) (rate(response_total{classification="success"}[1m])) / sum by (namespace, pod) (rate(response_total[1m]))`),
			panel(3, "Latency p50 / p95 / p99", "ms", 8,
				`histogram_quantile(0.5, sum by (le, namespace, pod) (rate(response_latency_ms_bucket[1m])))`,
				`histogram_quantile(0.95, sum by (le, namespace, pod) (rate(response_latency_ms_bucket[1m])))`,
				`histogram_quantile(0.99, sum by (le, namespace, pod) (rate(response_latency_ms_bucket[1m])))`),
			panel(4, "Open TCP connections", "short", 8, `sum by (namespace, pod) (tcp_open_connections)`),
		},
	}
	return json.MarshalIndent(dashboard, "", "  ")
}

func grafana(v Values) ([]any, error) {
	const component = "grafana"
	dashboard, err := GrafanaDashboard()
	if err != nil {
		return nil, err
	}
	datasources, err := yaml.Marshal(map[string]any{
		"apiVersion": 1,
		"datasources": []any{map[string]any{
			"name": "prometheus", "uid": "prometheus", "type": "prometheus", "access": "proxy", "isDefault": true,
			"url": fmt.Sprintf("http://prometheus.%s.svc.%s:%d", v.Namespace, v.ClusterDomain, PrometheusPort),
		}},
	})
	if err != nil {
		return nil, err
	}
	providers, err := yaml.Marshal(map[string]any{
		"apiVersion": 1,
		"providers": []any{map[string]any{
			"name": "lightmesh", "folder": "lightmesh", "type": "file", "disableDeletion": true,
			"options": map[string]any{"path": "/etc/grafana/dashboards"},
		}},
	})
	if err != nil {
		return nil, err
	}
	configName, dashboardsName := GrafanaName+"-config", GrafanaName+"-dashboards"
	container := corev1.Container{
		Name:  component,
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: GrafanaPort, Protocol: corev1.ProtocolTCP}},
		Env: []corev1.EnvVar{
			{Name: "GF_AUTH_ANONYMOUS_ENABLED", Value: "true"},
			{Name: "GF_AUTH_ANONYMOUS_ORG_ROLE", Value: "Viewer"},
			{Name: "GF_PATHS_PROVISIONING", Value: "/etc/grafana/provisioning"},
			{Name: "GF_PATHS_DATA", Value: "/var/lib/grafana"},
		},
		ReadinessProbe: httpProbe("/api/health", GrafanaPort),
		LivenessProbe:  httpProbe("/api/health", GrafanaPort),
		VolumeMounts: []corev1.VolumeMount{
			{Name: "config", MountPath: "/etc/grafana/provisioning/datasources", SubPath: "", ReadOnly: true},
			{Name: "providers", MountPath: "/etc/grafana/provisioning/dashboards", ReadOnly: true},
			{Name: "dashboards", MountPath: "/etc/grafana/dashboards", ReadOnly: true},
			{Name: "data", MountPath: "/var/lib/grafana"},
		},
	}
	volumes := []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configName},
			Items:                []corev1.KeyToPath{{Key: "datasources.yaml", Path: "datasources.yaml"}},
		}}},
		{Name: "providers", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configName},
			Items:                []corev1.KeyToPath{{Key: "dashboards.yaml", Path: "dashboards.yaml"}},
		}}},
		configMapVolume("dashboards", dashboardsName),
		emptyDir("data"),
	}
	return []any{
		serviceAccount(v, GrafanaName, component),
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(v, configName, component),
			Data:       map[string]string{"datasources.yaml": string(datasources), "dashboards.yaml": string(providers)},
		},
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(v, dashboardsName, component),
			Data:       map[string]string{"lightmesh-proxies.json": string(dashboard)},
		},
		addonService(v, "grafana", component, tcpPort("http", GrafanaPort)),
		addonDeployment(v, GrafanaName, component, v.Grafana, grafanaUID, container, volumes),
	}, nil
}

// JaegerAgentAddress is the Jaeger add-on's agent, host:port (UDP).
func JaegerAgentAddress(v Values) string {
	return fmt.Sprintf("jaeger-agent.%s.svc.%s:%d", v.Namespace, v.ClusterDomain, JaegerAgentPort)
}

func jaeger(v Values) ([]any, error) {
	const component = "jaeger"
	configName := JaegerName + "-config"
	// The seed's tracing configuration: sample everything, report to the agent.
	config, err := yaml.Marshal(map[string]any{
		"sampling": map[string]any{"type": "const", "param": 1},
		"reporter": map[string]any{
			"logSpans":           true,
			"localAgentHostPort": JaegerAgentAddress(v),
		},
	})
	if err != nil {
		return nil, err
	}
	container := corev1.Container{
		Name: component,
		Ports: []corev1.ContainerPort{
			{Name: "agent-compact", ContainerPort: JaegerAgentPort, Protocol: corev1.ProtocolUDP},
			{Name: "query", ContainerPort: JaegerQueryPort, Protocol: corev1.ProtocolTCP},
			{Name: "collector-http", ContainerPort: JaegerHTTPPort, Protocol: corev1.ProtocolTCP},
			{Name: "otlp-grpc", ContainerPort: JaegerOTLPPort, Protocol: corev1.ProtocolTCP},
			{Name: "admin", ContainerPort: JaegerAdminPort, Protocol: corev1.ProtocolTCP},
		},
		Env:            []corev1.EnvVar{{Name: "COLLECTOR_OTLP_ENABLED", Value: "true"}},
		ReadinessProbe: httpProbe("/", JaegerAdminPort),
		LivenessProbe:  httpProbe("/", JaegerAdminPort),
		VolumeMounts:   []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
	}
	return []any{
		serviceAccount(v, JaegerName, component),
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: objectMeta(v, configName, component),
			Data:       map[string]string{"jaeger.yaml": string(config)},
		},
		addonService(v, "jaeger-agent", component, corev1.ServicePort{
			Name: "agent-compact", Port: JaegerAgentPort, TargetPort: intstr.FromInt32(JaegerAgentPort), Protocol: corev1.ProtocolUDP,
		}),
		addonService(v, "jaeger", component,
			tcpPort("query", JaegerQueryPort), tcpPort("collector-http", JaegerHTTPPort), tcpPort("otlp-grpc", JaegerOTLPPort)),
		addonDeployment(v, JaegerName, component, v.Jaeger, jaegerUID, container, []corev1.Volume{emptyDir("tmp")}),
	}, nil
}
