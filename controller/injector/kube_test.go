package injector

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/inject"
)

func TestConfigMapSource(t *testing.T) {
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: install.ConfigMapName, Namespace: controlPlane}, Data: installedConfigData(t)}
	client := fake.NewClientset(cm)
	now := time.Unix(1_700_000_000, 0)
	source := &ConfigMapSource{Client: client.CoreV1(), Namespace: controlPlane, TTL: 10 * time.Second, Now: func() time.Time { return now }}

	cfg, err := source.InjectConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := installedConfig(t); cfg.TrustAnchorsPEM != want.TrustAnchorsPEM || cfg.ProxyImage != want.ProxyImage || cfg.ControlPlaneNamespace != controlPlane {
		t.Errorf("config %+v, want the installation's", cfg)
	}

	// A change is seen once the TTL has passed.
	cm.Data = map[string]string{install.ConfigKey: strings.ReplaceAll(cm.Data[install.ConfigKey], "logLevel: info", "logLevel: debug")}
	if _, err := client.CoreV1().ConfigMaps(controlPlane).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := source.InjectConfig(ctx); cfg.LogLevel != "info" {
		t.Errorf("log level %q within the TTL, want the cached info", cfg.LogLevel)
	}
	now = now.Add(11 * time.Second)
	if cfg, _ := source.InjectConfig(ctx); cfg.LogLevel != "debug" {
		t.Errorf("log level %q after the TTL, want debug", cfg.LogLevel)
	}

	// When the ConfigMap goes, the last good configuration stays.
	if err := client.CoreV1().ConfigMaps(controlPlane).Delete(ctx, install.ConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if cfg, err := source.InjectConfig(ctx); err != nil || cfg.LogLevel != "debug" {
		t.Errorf("after the ConfigMap went: %v, log level %q; want the last good configuration", err, cfg.LogLevel)
	}

	// Without one ever read, it is an error.
	empty := &ConfigMapSource{Client: client.CoreV1(), Namespace: controlPlane}
	if _, err := empty.InjectConfig(ctx); err == nil || !strings.Contains(err.Error(), install.ConfigMapName) {
		t.Errorf("no ConfigMap: error %v, want one naming %s", err, install.ConfigMapName)
	}
}

func TestConfigFromDataRejects(t *testing.T) {
	for name, data := range map[string]map[string]string{
		"no key":        {},
		"bad YAML":      {install.ConfigKey: "proxy: [1"},
		"unknown value": {install.ConfigKey: "nope: 1\n"},
		"no anchors":    {install.ConfigKey: "namespace: lightmesh\n"},
		"bad value":     {install.ConfigKey: "proxy:\n  logLevel: loud\n"},
	} {
		if _, err := ConfigFromData(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestKubeNamespaces(t *testing.T) {
	client := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}})
	got, err := KubeNamespaces{Client: client.CoreV1()}.NamespaceAnnotations(context.Background(), "app")
	if err != nil || got[inject.AnnotationInject] != inject.InjectEnabled {
		t.Errorf("annotations %v, %v", got, err)
	}
	if _, err := (KubeNamespaces{Client: client.CoreV1()}).NamespaceAnnotations(context.Background(), "gone"); err == nil {
		t.Error("a missing namespace was found")
	}
}
