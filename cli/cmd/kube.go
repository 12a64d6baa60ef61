package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lightmesh/lightmesh/install"
)

// kubeOptions are the global flags that say which cluster to talk to.
type kubeOptions struct {
	kubeconfig string
	context    string
}

// kubeTimeout bounds every request the CLI makes to the API server.
const kubeTimeout = 30 * time.Second

func (k *kubeOptions) coreClient() (corev1client.CoreV1Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: k.context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load the kubeconfig: %w", err)
	}
	cfg.Timeout = kubeTimeout
	return corev1client.NewForConfig(cfg)
}

// errNotInstalled means the cluster answered but has no lightmesh-config ConfigMap.
type errNotInstalled struct{ namespace string }

func (e errNotInstalled) Error() string {
	return fmt.Sprintf("lightmesh is not installed in namespace %q (no ConfigMap %s)", e.namespace, install.ConfigMapName)
}

// installedValues reads the values of the installation in namespace from its
// lightmesh-config ConfigMap.
func (k *kubeOptions) installedValues(ctx context.Context, namespace string) (install.Values, error) {
	client, err := k.coreClient()
	if err != nil {
		return install.Values{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	cm, err := client.ConfigMaps(namespace).Get(ctx, install.ConfigMapName, metav1.GetOptions{})
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
func (k *kubeOptions) isInstalled(ctx context.Context, namespace string) (bool, error) {
	_, err := k.installedValues(ctx, namespace)
	var notInstalled errNotInstalled
	if errors.As(err, &notInstalled) {
		return false, nil
	}
	return err == nil, err
}
