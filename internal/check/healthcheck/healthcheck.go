// Package healthcheck holds the checks `mesh check` runs, in categories of the check library:
// kubernetes-api, kubernetes-version, pre-install (--pre), lightmesh-config, control-plane,
// identity, policy and data-plane (--proxy). Every check talks to the cluster through a
// kubernetes.Interface, so tests use client-go's fake clientset, and tells the time with the
// injected clock.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check"
)

// Category names, in the order they run.
const (
	KubernetesAPI     = "kubernetes-api"
	KubernetesVersion = "kubernetes-version"
	PreInstall        = "pre-install"
	LightmeshConfig   = "lightmesh-config"
	ControlPlane      = "control-plane"
	Identity          = "identity"
	DataPlane         = "data-plane"
)

// Limits the checks hold the cluster to.
const (
	// MinKubernetesVersion is the oldest API server lightmesh supports.
	MinKubernetesVersion = "1.30.0"
	// MaxClockSkew is how far a node's clock may be from this machine's.
	MaxClockSkew = 5 * time.Minute
	// ExpiryWarning is how close to its expiry a certificate gets a warning.
	ExpiryWarning = 60 * 24 * time.Hour
)

// Options say what to check and how to reach the cluster.
type Options struct {
	// ControlPlaneNamespace is where lightmesh is (or, with Pre, will be) installed.
	ControlPlaneNamespace string
	// DataPlaneNamespace limits the data-plane checks to one namespace; empty is all.
	DataPlaneNamespace string
	// Pre checks that lightmesh can be installed instead of checking an installation.
	Pre bool
	// Proxy adds the data-plane checks.
	Proxy bool
	// Version is the CLI's version, which the control plane and proxies should run.
	Version string
	// ClientGoVersion is the version of the client-go module the CLI was built with
	// ("v0.37.2"); empty when unknown.
	ClientGoVersion string
	// Clock tells the time (check.SystemClock when nil).
	Clock check.Clock
	// NewClient makes the Kubernetes client; its error is the first check's failure.
	NewClient func() (kubernetes.Interface, error)
	// NewDynamicClient makes the client the policy checks read CRDs and custom resources
	// with.
	NewDynamicClient func() (dynamic.Interface, error)
}

// Checker builds the categories for one run; its checks share the client the first one
// makes.
type Checker struct {
	opts    Options
	client  kubernetes.Interface
	dynamic dynamic.Interface
}

// New returns a Checker for opts.
func New(opts Options) *Checker {
	if opts.Clock == nil {
		opts.Clock = check.SystemClock{}
	}
	return &Checker{opts: opts}
}

// Categories returns the categories to run: kubernetes-api and kubernetes-version, then
// pre-install with Pre, or else lightmesh-config, control-plane, identity, policy and, with
// Proxy, data-plane.
func (c *Checker) Categories() ([]check.Category, error) {
	categories := []check.Category{c.kubernetesAPI(), c.kubernetesVersion()}
	if c.opts.Pre {
		pre, err := c.preInstall()
		if err != nil {
			return nil, err
		}
		return append(categories, pre), nil
	}
	config, err := c.lightmeshConfig()
	if err != nil {
		return nil, err
	}
	categories = append(categories, config, c.controlPlane(), c.identity(), c.policy())
	if c.opts.Proxy {
		categories = append(categories, c.dataPlane())
	}
	return categories, nil
}

func (c *Checker) now() time.Time { return c.opts.Clock.Now() }

func (c *Checker) kubernetesAPI() check.Category {
	return check.Category{ID: KubernetesAPI, Checks: []check.Check{
		{
			ID:          "client",
			Description: "can initialize the client",
			Hint:        "check the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and --context",
			Fatal:       true,
			Run: func(context.Context) error {
				if c.client != nil {
					return nil
				}
				client, err := c.opts.NewClient()
				if err != nil {
					return err
				}
				c.client = client
				return nil
			},
		},
		{
			ID:          "reach",
			Description: "can reach the Kubernetes API",
			Hint:        "check that the API server is up and that the kubeconfig's server address is right (kubectl cluster-info)",
			Fatal:       true,
			Run: func(ctx context.Context) error {
				_, err := c.client.Discovery().ServerVersionWithContext(ctx)
				return err
			},
		},
		{
			ID:          "query",
			Description: "can query the Kubernetes API",
			Hint:        "check that your credentials may list namespaces (kubectl auth can-i list namespaces)",
			Fatal:       true,
			Run: func(ctx context.Context) error {
				_, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
				return err
			},
		},
	}}
}

// renderedObjects are what `mesh install` renders for the control-plane namespace, with
// throwaway identity material: the names and kinds the checks look for.
func (c *Checker) renderedObjects() ([]map[string]any, error) {
	values := install.DefaultValues()
	values.Namespace = c.opts.ControlPlaneNamespace
	if err := values.Validate(); err != nil {
		return nil, fmt.Errorf("--control-plane-namespace: %w", err)
	}
	id, err := install.GenerateIdentity(values.Identity.TrustDomain, c.opts.Clock)
	if err != nil {
		return nil, err
	}
	return install.Render(values, id)
}

// renderedObject is the kind and name of one rendered object.
type renderedObject struct {
	apiVersion, kind, name, namespace string
}

func objectsOf(objects []map[string]any) []renderedObject {
	var out []renderedObject
	for _, o := range objects {
		meta, _ := o["metadata"].(map[string]any)
		r := renderedObject{}
		r.apiVersion, _ = o["apiVersion"].(string)
		r.kind, _ = o["kind"].(string)
		r.name, _ = meta["name"].(string)
		r.namespace, _ = meta["namespace"].(string)
		out = append(out, r)
	}
	return out
}

// notFound turns a NotFound error into "what does not exist", and wraps others.
func notFound(err error, what string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s does not exist", what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// errList joins problems, one a line.
func errList(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "\n"))
}
