package injector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/inject"
)

// DefaultConfigTTL is how long the injector keeps the configuration before reading the
// ConfigMap again.
const DefaultConfigTTL = 10 * time.Second

// kubeTimeout bounds each API request the injector makes while a review waits.
const kubeTimeout = 3 * time.Second

// ConfigMapSource reads the installation's configuration from the lightmesh-config ConfigMap
// of Namespace (install.ParseStoredValues, which keeps keys of a newer version, then
// Values.InjectConfig, as `mesh inject` does), and keeps it for TTL. When a later read fails it keeps serving the last good configuration.
type ConfigMapSource struct {
	Client    corev1client.ConfigMapsGetter
	Namespace string
	// TTL defaults to DefaultConfigTTL; Now to time.Now.
	TTL time.Duration
	Now func() time.Time

	mu     sync.Mutex
	cached *inject.Config
	readAt time.Time
}

// InjectConfig returns the installation's configuration.
func (s *ConfigMapSource) InjectConfig(ctx context.Context) (inject.Config, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ttl := s.TTL
	if ttl == 0 {
		ttl = DefaultConfigTTL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != nil && now().Sub(s.readAt) < ttl {
		return *s.cached, nil
	}
	cfg, err := s.read(ctx)
	if err != nil {
		if s.cached != nil {
			return *s.cached, nil
		}
		return inject.Config{}, err
	}
	s.cached, s.readAt = &cfg, now()
	return cfg, nil
}

func (s *ConfigMapSource) read(ctx context.Context) (inject.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	cm, err := s.Client.ConfigMaps(s.Namespace).Get(ctx, install.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		return inject.Config{}, fmt.Errorf("read ConfigMap %s/%s: %w", s.Namespace, install.ConfigMapName, err)
	}
	return ConfigFromData(cm.Data)
}

// ConfigFromData builds the injection configuration from the data of a lightmesh-config
// ConfigMap.
func ConfigFromData(data map[string]string) (inject.Config, error) {
	text, ok := data[install.ConfigKey]
	if !ok {
		return inject.Config{}, fmt.Errorf("ConfigMap %s has no %s key; reinstall lightmesh", install.ConfigMapName, install.ConfigKey)
	}
	// Stored values are read leniently: keys a newer CLI wrote that this controller does not
	// know are left out rather than making it refuse to inject during an upgrade.
	values, _, err := install.ParseStoredValues([]byte(text))
	if err != nil {
		return inject.Config{}, fmt.Errorf("ConfigMap %s: %w", install.ConfigMapName, err)
	}
	cfg, err := values.InjectConfig()
	if err != nil {
		return inject.Config{}, fmt.Errorf("ConfigMap %s: %w", install.ConfigMapName, err)
	}
	if cfg.TrustAnchorsPEM == "" {
		return inject.Config{}, errors.New("the installation's configuration has no trust anchors; reinstall lightmesh")
	}
	return cfg, nil
}

// KubeNamespaces reads namespaces' annotations from the API server.
type KubeNamespaces struct {
	Client corev1client.NamespacesGetter
}

// NamespaceAnnotations returns the annotations of namespace name.
func (k KubeNamespaces) NamespaceAnnotations(ctx context.Context, name string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	ns, err := k.Client.Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return ns.Annotations, nil
}
