package healthcheck

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/inject"
)

const (
	proxyContainer         = inject.ProxyContainerName
	proxyVersionAnnotation = inject.AnnotationProxyVersion
)

// dataPlane checks the meshed pods: those with the mesh-proxy (native sidecar) init
// container.
func (c *Checker) dataPlane() check.Category {
	ns := c.opts.DataPlaneNamespace
	where := "any namespace"
	if ns != "" {
		where = fmt.Sprintf("namespace %q", ns)
	}
	var checks []check.Check
	if ns != "" {
		checks = append(checks, check.Check{
			ID:          "namespace",
			Description: "the data-plane namespace exists",
			Hint:        "name an existing namespace with --namespace, or leave it out to check every namespace",
			Fatal:       true,
			Run: func(ctx context.Context) error {
				_, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				if err != nil {
					return notFound(err, fmt.Sprintf("namespace %q", ns))
				}
				return nil
			},
		})
	}
	checks = append(checks,
		check.Check{
			ID:          "proxies-ready",
			Description: "the meshed pods are ready",
			Hint:        "kubectl -n <ns> describe pod <pod> and kubectl -n <ns> logs <pod> -c " + proxyContainer + " tell why",
			Run: func(ctx context.Context) error {
				pods, err := c.meshedPods(ctx)
				if err != nil {
					return err
				}
				if len(pods) == 0 {
					return check.Warnf("no meshed pods in %s", where)
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
		check.Check{
			ID:          "proxy-version",
			Description: "the meshed pods' proxies are the CLI's version",
			Hint:        "re-inject and restart the workloads (mesh inject ... | kubectl apply -f -, then kubectl rollout restart)",
			Run: func(ctx context.Context) error {
				pods, err := c.meshedPods(ctx)
				if err != nil {
					return err
				}
				var problems []string
				for _, pod := range pods {
					got, ok := pod.Annotations[proxyVersionAnnotation]
					switch {
					case !ok:
						problems = append(problems, fmt.Sprintf("pod %s/%s has no %s annotation", pod.Namespace, pod.Name, proxyVersionAnnotation))
					case got != c.opts.Version:
						problems = append(problems, fmt.Sprintf("pod %s/%s runs proxy %s, the CLI is %s", pod.Namespace, pod.Name, got, c.opts.Version))
					}
				}
				return check.Warn(errList(problems))
			},
		},
	)
	return check.Category{ID: DataPlane, Checks: checks}
}

// meshedPods returns the pods, not finished nor being deleted, that have the proxy.
func (c *Checker) meshedPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := c.client.CoreV1().Pods(c.opts.DataPlaneNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var pods []corev1.Pod
	for _, pod := range list.Items {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if hasProxy(pod) {
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

func hasProxy(pod corev1.Pod) bool {
	for _, container := range pod.Spec.InitContainers {
		if container.Name == proxyContainer {
			return true
		}
	}
	return false
}
