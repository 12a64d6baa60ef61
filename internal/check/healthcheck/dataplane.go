package healthcheck

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/identity"
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
		check.Check{
			ID:          "proxy-certificates",
			Description: "the meshed pods' certificates chain to the current trust anchors",
			Hint:        "a certificate that does not chain: restart the workload (kubectl rollout restart) so its proxy gets one from the current issuer; one that cannot be read: the proxy must serve GET " + ProxyCertificatePath + " on its admin port to the API server's pod proxy",
			Run: func(ctx context.Context) error {
				anchors, err := c.anchors(ctx)
				if err != nil {
					return err
				}
				pods, err := c.meshedPods(ctx)
				if err != nil {
					return err
				}
				var problems, unknown []string
				for _, pod := range pods {
					if !podReady(pod) {
						continue // proxies-ready reports it; it may have no certificate yet
					}
					err := c.proxyCertificateChains(ctx, pod, anchors)
					switch {
					case errors.Is(err, errNoCertificateEndpoint):
						unknown = append(unknown, fmt.Sprintf("%s/%s (%v)", pod.Namespace, pod.Name, errors.Unwrap(err)))
					case err != nil:
						problems = append(problems, fmt.Sprintf("pod %s/%s: %v", pod.Namespace, pod.Name, err))
					}
				}
				if len(problems) > 0 {
					return errList(problems)
				}
				if len(unknown) > 0 {
					return check.Warnf("cannot read the certificates of the proxies of %s: the proxies must answer GET :%d%s (their chain, PEM) to the API server's pod proxy", strings.Join(unknown, ", "), inject.AdminPort, ProxyCertificatePath)
				}
				return nil
			},
		},
	)
	return check.Category{ID: DataPlane, Checks: checks}
}

// ProxyCertificatePath is the proxy admin server's read-only endpoint that answers the
// proxy's current certificate chain (leaf first) as PEM.
const ProxyCertificatePath = "/identity/certificate"

// errNoCertificateEndpoint means the proxy does not serve ProxyCertificatePath (404) or
// refuses it to the API server's pod proxy (403); it wraps the answer.
var errNoCertificateEndpoint = errors.New("the proxy does not serve its certificate")

type noCertificateEndpoint struct{ answer error }

func (e noCertificateEndpoint) Error() string { return e.answer.Error() }
func (e noCertificateEndpoint) Unwrap() error { return e.answer }
func (e noCertificateEndpoint) Is(target error) bool {
	return target == errNoCertificateEndpoint
}

// proxyCertificateChains reads the certificate of pod's proxy through the API server's pod
// proxy (so RBAC decides who may) and verifies it against anchors at the checker's time.
func (c *Checker) proxyCertificateChains(ctx context.Context, pod corev1.Pod, anchors []*x509.Certificate) error {
	raw, err := c.client.CoreV1().Pods(pod.Namespace).ProxyGet("http", pod.Name, strconv.Itoa(inject.AdminPort), ProxyCertificatePath, nil).DoRaw(ctx)
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return noCertificateEndpoint{answer: err}
	}
	if err != nil {
		return fmt.Errorf("read the proxy's certificate: %w", err)
	}
	chain, err := identity.DecodeCertificatesPEM(raw)
	if err != nil {
		return fmt.Errorf("the proxy's certificate: %w", err)
	}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	intermediates := x509.NewCertPool()
	for _, cert := range chain[1:] {
		intermediates.AddCert(cert)
	}
	_, err = chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   c.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		name := chain[0].Subject.String()
		if id, idErr := identity.SpiffeIDFromCertificate(chain[0]); idErr == nil {
			name = id.String()
		}
		return fmt.Errorf("certificate %s does not chain to the current trust anchors: %w", name, err)
	}
	return nil
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
