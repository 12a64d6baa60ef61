package cmd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/inject"
)

// kubeOptions are the global flags that say which cluster to talk to.
type kubeOptions struct {
	kubeconfig string
	context    string
}

// kubeTimeout bounds every request the CLI makes to the API server.
const kubeTimeout = 30 * time.Second

func (k *kubeOptions) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: k.context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load the kubeconfig: %w", err)
	}
	cfg.Timeout = kubeTimeout
	return cfg, nil
}

// cluster connects to the cluster of the kubeconfig flags.
func (k *kubeOptions) cluster() (*meshCluster, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &meshCluster{core: core, dynamic: dyn}, nil
}

// meshCluster answers what install, upgrade and uninstall ask the cluster. Tests build it
// from client-go's fake clientsets.
type meshCluster struct {
	core    kubernetes.Interface
	dynamic dynamic.Interface
}

// crdGVR is the resource of CustomResourceDefinitions.
var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// errNotInstalled means the cluster answered but has no lightmesh-config ConfigMap.
type errNotInstalled struct{ namespace string }

func (e errNotInstalled) Error() string {
	return fmt.Sprintf("lightmesh is not installed in namespace %q (no ConfigMap %s)", e.namespace, install.ConfigMapName)
}

// installedValues reads the values of the installation in namespace from its
// lightmesh-config ConfigMap.
func (k *kubeOptions) installedValues(ctx context.Context, namespace string) (install.Values, error) {
	c, err := k.cluster()
	if err != nil {
		return install.Values{}, err
	}
	return c.values(ctx, namespace)
}

func (c *meshCluster) values(ctx context.Context, namespace string) (install.Values, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	cm, err := c.core.CoreV1().ConfigMaps(namespace).Get(ctx, install.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return install.Values{}, errNotInstalled{namespace: namespace}
	}
	if err != nil {
		return install.Values{}, fmt.Errorf("read ConfigMap %s/%s: %w", namespace, install.ConfigMapName, err)
	}
	data, ok := cm.Data[install.ConfigKey]
	if !ok {
		return install.Values{}, fmt.Errorf("ConfigMap %s/%s has no %s key; reinstall lightmesh", namespace, install.ConfigMapName, install.ConfigKey)
	}
	values, err := install.ParseValues([]byte(data))
	if err != nil {
		return install.Values{}, fmt.Errorf("ConfigMap %s/%s: %w", namespace, install.ConfigMapName, err)
	}
	return values, nil
}

// isInstalled reports whether namespace holds a lightmesh installation.
func (c *meshCluster) isInstalled(ctx context.Context, namespace string) (bool, error) {
	_, err := c.values(ctx, namespace)
	var notInstalled errNotInstalled
	if errors.As(err, &notInstalled) {
		return false, nil
	}
	return err == nil, err
}

// identity reads the installation's trust anchors (the trust roots ConfigMap) and issuer
// (its Secret), so an upgrade keeps them.
func (c *meshCluster) identity(ctx context.Context, namespace string) (install.Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	roots, err := c.core.CoreV1().ConfigMaps(namespace).Get(ctx, install.TrustRootsConfigMapName, metav1.GetOptions{})
	if err != nil {
		return install.Identity{}, fmt.Errorf("read the trust anchors (ConfigMap %s/%s): %w", namespace, install.TrustRootsConfigMapName, err)
	}
	secret, err := c.core.CoreV1().Secrets(namespace).Get(ctx, install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		return install.Identity{}, fmt.Errorf("read the issuer (Secret %s/%s): %w", namespace, install.IssuerSecretName, err)
	}
	id := install.Identity{
		TrustAnchorsPEM:      []byte(roots.Data[install.TrustRootsKey]),
		IssuerCertificatePEM: secret.Data[corev1.TLSCertKey],
		IssuerKeyPEM:         secret.Data[corev1.TLSPrivateKeyKey],
	}
	if len(id.TrustAnchorsPEM) == 0 || len(id.IssuerCertificatePEM) == 0 || len(id.IssuerKeyPEM) == 0 {
		return install.Identity{}, fmt.Errorf("the trust anchors or the issuer of namespace %q are empty; give them with --identity-* files", namespace)
	}
	return id, nil
}

// crdState is what the cluster has of one of our CRDs.
type crdState struct {
	exists bool
	// ours is set when the CRD carries our label (install created it).
	ours bool
	// bundleVersion is the upstream Gateway API's gateway.networking.k8s.io/bundle-version.
	bundleVersion string
}

// crds returns, for each CRD install renders, what the cluster has.
func (c *meshCluster) crds(ctx context.Context) (map[string]crdState, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	out := map[string]crdState{}
	for _, name := range install.CRDNames() {
		crd, err := c.dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out[name] = crdState{}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read CustomResourceDefinition %s: %w", name, err)
		}
		out[name] = crdState{
			exists:        true,
			ours:          crd.GetLabels()[install.CRDOwnedLabel] == "lightmesh",
			bundleVersion: crd.GetAnnotations()["gateway.networking.k8s.io/bundle-version"],
		}
	}
	return out, nil
}

// foreignCRDs returns the names of the CRDs that exist and are not ours, and writes why
// each is left out to say.
func foreignCRDs(states map[string]crdState, say func(format string, args ...any)) map[string]bool {
	skip := map[string]bool{}
	for _, name := range install.CRDNames() {
		s := states[name]
		if !s.exists || s.ours {
			continue
		}
		skip[name] = true
		owner := "another installation (Istio?)"
		if strings.HasSuffix(name, ".gateway.networking.k8s.io") {
			owner = "the upstream Gateway API"
			if s.bundleVersion != "" {
				owner += " " + s.bundleVersion
			}
		}
		say("CustomResourceDefinition %s exists and is not lightmesh's (%s): left out, lightmesh uses it as it is\n", name, owner)
	}
	return skip
}

// istioInstalled returns the namespaces where Istio's control plane (istiod) runs.
func (c *meshCluster) istioInstalled(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	list, err := c.core.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: "app=istiod"})
	if err != nil {
		return nil, fmt.Errorf("look for Istio: %w", err)
	}
	var namespaces []string
	for _, d := range list.Items {
		if !slices.Contains(namespaces, d.Namespace) {
			namespaces = append(namespaces, d.Namespace)
		}
	}
	sort.Strings(namespaces)
	return namespaces, nil
}

// otherInstallations returns the namespaces other than namespace that hold a lightmesh
// installation (their lightmesh-config ConfigMap).
func (c *meshCluster) otherInstallations(ctx context.Context, namespace string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	list, err := c.core.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + install.ConfigMapName})
	if err != nil {
		return nil, fmt.Errorf("look for other lightmesh installations: %w", err)
	}
	var others []string
	for _, cm := range list.Items {
		if cm.Name == install.ConfigMapName && cm.Namespace != namespace && !slices.Contains(others, cm.Namespace) {
			others = append(others, cm.Namespace)
		}
	}
	sort.Strings(others)
	return others, nil
}

// meshedPods returns namespace/name of the live pods whose proxies use the control plane
// in namespace.
func (c *meshCluster) meshedPods(ctx context.Context, namespace string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	list, err := c.core.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: inject.LabelControlPlaneNS + "=" + namespace})
	if err != nil {
		return nil, fmt.Errorf("look for meshed pods: %w", err)
	}
	var pods []string
	for _, p := range list.Items {
		if p.Labels[inject.LabelControlPlaneNS] != namespace || p.DeletionTimestamp != nil ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		pods = append(pods, p.Namespace+"/"+p.Name)
	}
	sort.Strings(pods)
	return pods, nil
}

// exists reports whether the cluster-scoped object of apiVersion, kind and name exists.
func (c *meshCluster) exists(ctx context.Context, apiVersion, kind, name string) (bool, error) {
	gvr, ok := clusterScoped[kind]
	if !ok {
		return false, fmt.Errorf("no resource known for kind %s", kind)
	}
	if gv, err := schema.ParseGroupVersion(apiVersion); err == nil {
		gvr.Group, gvr.Version = gv.Group, gv.Version
	}
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	_, err := c.dynamic.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s %s: %w", kind, name, err)
	}
	return true, nil
}

// clusterScoped are the resources of the cluster-scoped kinds install renders.
var clusterScoped = map[string]schema.GroupVersionResource{
	"Namespace":                      {Version: "v1", Resource: "namespaces"},
	"ClusterRole":                    {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding":             {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"MutatingWebhookConfiguration":   {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
	"ValidatingWebhookConfiguration": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
	"CustomResourceDefinition":       crdGVR,
}

// customResources returns kind namespace/name of the resources of the CRDs names (ours:
// they serve v1).
func (c *meshCluster) customResources(ctx context.Context, names []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	var out []string
	for _, def := range install.CRDs() {
		if !slices.Contains(names, def.Name()) {
			continue
		}
		gvr := schema.GroupVersionResource{Group: def.Group, Version: def.Storage, Resource: def.Plural}
		list, err := c.dynamic.Resource(gvr).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", def.Name(), err)
		}
		for _, item := range list.Items {
			out = append(out, def.Kind+" "+item.GetNamespace()+"/"+item.GetName())
		}
	}
	sort.Strings(out)
	return out, nil
}
