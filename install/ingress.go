package install

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/lightmesh/lightmesh/internal/inject"
)

// The ingress gateway's names and ports.
const (
	IngressName = "lightmesh-ingress"
	// IngressHTTPPort is the Gateway server port the gateway serves (the Service's port);
	// IngressListenPort the proxy's listener behind it.
	IngressHTTPPort   = 80
	IngressListenPort = 8080
	// IngressHTTPSPort is the port of the Gateways' HTTPS servers (TLS terminated by the
	// gateway with their tls.credentialName Secrets); IngressHTTPSListenPort the listener.
	IngressHTTPSPort       = 443
	IngressHTTPSListenPort = 8443
	// IngressCredentialReaderName is the Role (and RoleBinding) that lets the controller read
	// the Secrets of the gateway's namespace, where Gateways' credentialName Secrets live.
	IngressCredentialReaderName = "lightmesh-ingress-credential-reader"
)

// IngressLabels are the gateway pods' labels: Istio's (the seed's Gateway selects
// istio: ingressgateway) and ours.
func IngressLabels() map[string]string {
	return map[string]string{"istio": "ingressgateway", "app": IngressName}
}

// IngressValues configure the ingress gateway (mesh install --ingress).
type IngressValues struct {
	Enabled  bool  `json:"enabled"`
	Replicas int32 `json:"replicas"`
	// NodePort is the node port of the gateway's Service port 80; 0 lets Kubernetes pick.
	NodePort int32 `json:"nodePort"`
	// HTTPSNodePort is the node port of the Service port 443; 0 lets Kubernetes pick.
	HTTPSNodePort int32 `json:"httpsNodePort,omitempty"`
}

// ingress renders the ingress gateway: mesh-proxy in gateway mode as the pod's only
// container (it is the application), with the mesh's identity and the destination service,
// and a NodePort Service with ports 80 and 443. Istio Gateways select it by its labels. HTTPS
// servers' certificates come from Secrets of the gateway's namespace, which the controller
// reads (a Role in that namespace only) and streams to the gateway's identity alone.
func ingress(v Values) ([]any, error) {
	cfg, err := v.injectConfig()
	if err != nil {
		return nil, err
	}
	proxy := inject.ProxyContainer(&cfg, true)
	proxy.RestartPolicy = nil // the gateway's main container, not a sidecar
	proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "MESH_PROXY_GATEWAY_LISTENERS", Value: fmt.Sprintf("%d=0.0.0.0:%d,%d=0.0.0.0:%d", IngressHTTPPort, IngressListenPort, IngressHTTPSPort, IngressHTTPSListenPort)})
	proxy.Ports = append([]corev1.ContainerPort{
		{Name: "http", ContainerPort: IngressListenPort, Protocol: corev1.ProtocolTCP},
		{Name: "https", ContainerPort: IngressHTTPSListenPort, Protocol: corev1.ProtocolTCP},
	}, proxy.Ports...)
	labels := commonLabels("ingress")
	podLabels := commonLabels("ingress")
	for k, val := range IngressLabels() {
		podLabels[k] = val
	}
	replicas := v.Ingress.Replicas
	if replicas < 1 {
		replicas = 1
	}
	yes := true
	service := &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: IngressName, Namespace: v.Namespace, Labels: labels},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: IngressLabels(),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: IngressHTTPPort, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP, NodePort: v.Ingress.NodePort},
				{Name: "https", Port: IngressHTTPSPort, TargetPort: intstr.FromString("https"), Protocol: corev1.ProtocolTCP, NodePort: v.Ingress.HTTPSNodePort},
			},
		},
	}
	deploy := &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: IngressName, Namespace: v.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: IngressLabels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{
					inject.AnnotationInject:       inject.InjectDisabled,
					inject.AnnotationProxyVersion: cfg.Version,
				}},
				Spec: corev1.PodSpec{
					ServiceAccountName: IngressName,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   &yes,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{proxy},
					Volumes:    []corev1.Volume{inject.TokenVolume()},
				},
			},
		},
	}
	// The controller reads the Secrets of this namespace only (not cluster-wide): Istio looks
	// credentialName up in the gateway pod's namespace, and the gateway runs here. List and
	// watch cannot be narrowed to names known only later, in Gateways.
	role := &rbacv1.Role{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
		ObjectMeta: objectMeta(v, IngressCredentialReaderName, "ingress"),
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}}},
	}
	binding := &rbacv1.RoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: objectMeta(v, IngressCredentialReaderName, "ingress"),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: IngressCredentialReaderName},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerName, Namespace: v.Namespace}},
	}
	return []any{serviceAccount(v, IngressName, "ingress"), role, binding, service, deploy}, nil
}
