package healthcheck

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check"
)

const reinstallHint = "reinstall lightmesh: mesh install --ignore-cluster --set namespace=<ns> | kubectl apply -f -"

func (c *Checker) lightmeshConfig() (check.Category, error) {
	ns := c.opts.ControlPlaneNamespace
	rendered, err := c.renderedObjects()
	if err != nil {
		return check.Category{}, err
	}
	var clusterRoles, clusterRoleBindings []string
	for _, o := range objectsOf(rendered) {
		switch o.kind {
		case "ClusterRole":
			clusterRoles = append(clusterRoles, o.name)
		case "ClusterRoleBinding":
			clusterRoleBindings = append(clusterRoleBindings, o.name)
		}
	}
	return check.Category{ID: LightmeshConfig, Checks: []check.Check{
		{
			ID:          "namespace",
			Description: "the control-plane namespace exists",
			Hint:        "install lightmesh (mesh install | kubectl apply -f -), or name the namespace it is installed in with --control-plane-namespace",
			Fatal:       true,
			Run: func(ctx context.Context) error {
				_, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				if err != nil {
					return notFound(err, fmt.Sprintf("namespace %q", ns))
				}
				return nil
			},
		},
		{
			ID:          "config",
			Description: "the " + install.ConfigMapName + " ConfigMap exists and parses",
			Hint:        "install lightmesh into this namespace (mesh install --set namespace=<ns> | kubectl apply -f -), or name the namespace it is installed in with --control-plane-namespace",
			// Without it, lightmesh is not installed here: the rest could only fail.
			Fatal: true,
			Run: func(ctx context.Context) error {
				cm, err := c.client.CoreV1().ConfigMaps(ns).Get(ctx, install.ConfigMapName, metav1.GetOptions{})
				if err != nil {
					return notFound(err, "ConfigMap "+ns+"/"+install.ConfigMapName)
				}
				data, ok := cm.Data[install.ConfigKey]
				if !ok {
					return fmt.Errorf("ConfigMap %s/%s has no %s key", ns, install.ConfigMapName, install.ConfigKey)
				}
				values, err := install.ParseValues([]byte(data))
				if err != nil {
					return fmt.Errorf("ConfigMap %s/%s: %w", ns, install.ConfigMapName, err)
				}
				if err := values.Validate(); err != nil {
					return fmt.Errorf("ConfigMap %s/%s: %w", ns, install.ConfigMapName, err)
				}
				if values.Namespace != ns {
					return fmt.Errorf("ConfigMap %s/%s says the control plane is in namespace %q", ns, install.ConfigMapName, values.Namespace)
				}
				return nil
			},
		},
		{
			ID:          "cluster-roles",
			Description: "the control plane's ClusterRoles exist",
			Hint:        reinstallHint,
			Run: func(ctx context.Context) error {
				var problems []string
				for _, name := range clusterRoles {
					if _, err := c.client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); err != nil {
						problems = append(problems, notFound(err, "ClusterRole "+name).Error())
					}
				}
				return errList(problems)
			},
		},
		{
			ID:          "cluster-role-bindings",
			Description: "the control plane's ClusterRoleBindings exist",
			Hint:        reinstallHint,
			Run: func(ctx context.Context) error {
				var problems []string
				for _, name := range clusterRoleBindings {
					if _, err := c.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{}); err != nil {
						problems = append(problems, notFound(err, "ClusterRoleBinding "+name).Error())
					}
				}
				return errList(problems)
			},
		},
		{
			ID:          "webhook",
			Description: "the injector's MutatingWebhookConfiguration calls this control plane",
			Hint:        reinstallHint,
			Run: func(ctx context.Context) error {
				name := install.WebhookConfigurationName(ns)
				wh, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return notFound(err, "MutatingWebhookConfiguration "+name)
				}
				if len(wh.Webhooks) == 0 {
					return fmt.Errorf("MutatingWebhookConfiguration %s has no webhook", name)
				}
				var problems []string
				for _, w := range wh.Webhooks {
					svc := w.ClientConfig.Service
					switch {
					case svc == nil:
						problems = append(problems, fmt.Sprintf("webhook %s does not call a Service", w.Name))
					case svc.Namespace != ns || svc.Name != "webhook":
						problems = append(problems, fmt.Sprintf("webhook %s calls Service %s/%s, not %s/webhook", w.Name, svc.Namespace, svc.Name, ns))
					}
					if len(w.ClientConfig.CABundle) == 0 {
						problems = append(problems, fmt.Sprintf("webhook %s has no caBundle: the API server cannot verify the injector", w.Name))
					}
				}
				return errList(problems)
			},
		},
		{
			ID:          "trust-roots",
			Description: "the " + install.TrustRootsConfigMapName + " ConfigMap exists",
			Hint:        reinstallHint,
			Run: func(ctx context.Context) error {
				_, err := c.trustAnchorsPEM(ctx)
				return err
			},
		},
	}}, nil
}

func (c *Checker) trustAnchorsPEM(ctx context.Context) ([]byte, error) {
	ns := c.opts.ControlPlaneNamespace
	cm, err := c.client.CoreV1().ConfigMaps(ns).Get(ctx, install.TrustRootsConfigMapName, metav1.GetOptions{})
	if err != nil {
		return nil, notFound(err, "ConfigMap "+ns+"/"+install.TrustRootsConfigMapName)
	}
	data := cm.Data[install.TrustRootsKey]
	if strings.TrimSpace(data) == "" {
		return nil, fmt.Errorf("ConfigMap %s/%s has no %s", ns, install.TrustRootsConfigMapName, install.TrustRootsKey)
	}
	return []byte(data), nil
}

func (c *Checker) controlPlane() check.Category {
	ns := c.opts.ControlPlaneNamespace
	deploymentName := ns + "/" + install.ControllerName
	return check.Category{ID: ControlPlane, Checks: []check.Check{
		{
			ID:          "controller-available",
			Description: "the controller Deployment is available",
			Hint:        fmt.Sprintf("kubectl -n %s describe deployment %s tells why", ns, install.ControllerName),
			Run: func(ctx context.Context) error {
				d, err := c.client.AppsV1().Deployments(ns).Get(ctx, install.ControllerName, metav1.GetOptions{})
				if err != nil {
					return notFound(err, "Deployment "+deploymentName)
				}
				for _, cond := range d.Status.Conditions {
					if cond.Type == appsv1.DeploymentAvailable {
						if cond.Status == corev1.ConditionTrue {
							return nil
						}
						return fmt.Errorf("deployment %s is not available: %s", deploymentName, cond.Message)
					}
				}
				return fmt.Errorf("deployment %s is not available yet", deploymentName)
			},
		},
		{
			ID:          "controller-pods-ready",
			Description: "the controller pods are ready",
			Hint:        fmt.Sprintf("kubectl -n %s get pods and kubectl -n %s logs deployment/%s tell why", ns, ns, install.ControllerName),
			Run: func(ctx context.Context) error {
				pods, err := c.controllerPods(ctx)
				if err != nil {
					return err
				}
				var problems []string
				for _, pod := range pods {
					if !podReady(pod) {
						problems = append(problems, fmt.Sprintf("pod %s/%s is not ready (phase %s)", pod.Namespace, pod.Name, pod.Status.Phase))
					}
				}
				return errList(problems)
			},
		},
		{
			ID:          "controller-version",
			Description: "the controller runs the CLI's version",
			Hint:        "upgrade the control plane, or use the mesh CLI of its version",
			Run: func(ctx context.Context) error {
				pods, err := c.controllerPods(ctx)
				if err != nil {
					return err
				}
				var problems []string
				for _, pod := range pods {
					for _, container := range pod.Spec.Containers {
						if tag := imageTag(container.Image); tag != c.opts.Version {
							problems = append(problems, fmt.Sprintf("pod %s/%s container %s runs image %s, the CLI is %s",
								pod.Namespace, pod.Name, container.Name, container.Image, c.opts.Version))
						}
					}
				}
				return check.Warn(errList(problems))
			},
		},
	}}
}

// controllerPods returns the live pods of the controller Deployment, and an error when there
// are none.
func (c *Checker) controllerPods(ctx context.Context) ([]corev1.Pod, error) {
	ns := c.opts.ControlPlaneNamespace
	d, err := c.client.AppsV1().Deployments(ns).Get(ctx, install.ControllerName, metav1.GetOptions{})
	if err != nil {
		return nil, notFound(err, "Deployment "+ns+"/"+install.ControllerName)
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s: %w", ns, install.ControllerName, err)
	}
	list, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, fmt.Errorf("list the controller pods: %w", err)
	}
	var pods []corev1.Pod
	for _, pod := range list.Items {
		if pod.DeletionTimestamp == nil {
			pods = append(pods, pod)
		}
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("deployment %s/%s has no pods", ns, install.ControllerName)
	}
	return pods, nil
}

func podReady(pod corev1.Pod) bool {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// imageTag returns the tag of an image reference ("" when it has none).
func imageTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon <= slash {
		return ""
	}
	return image[colon+1:]
}
