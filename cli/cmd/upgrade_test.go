package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/lightmesh/lightmesh/install"
)

func runUpgradeOn(t *testing.T, c *meshCluster, args func(o *upgradeOptions)) (string, string, error) {
	t.Helper()
	opts := newUpgradeOptions()
	opts.cluster = func() (*meshCluster, error) { return c, nil }
	if args != nil {
		args(opts)
	}
	if err := opts.validate(); err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	err := runUpgrade(context.Background(), nil, &out, &errOut, opts)
	return out.String(), errOut.String(), err
}

// upgrade renders what install rendered (same values, same certificates) plus the new
// --set, and keeps the installed trust anchor and issuer.
func TestUpgradeKeepsValuesAndIdentity(t *testing.T) {
	objects := installedObjects(t, "mesh-u", "proxy.logLevel=debug")
	c := fakeCluster(t, objects...)
	out, _, err := runUpgradeOn(t, c, func(o *upgradeOptions) {
		o.controlPlaneNamespace = "mesh-u"
		o.set = []string{"prometheus.enabled=true"}
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		issuer corev1.Secret
		config corev1.ConfigMap
	)
	decodeNamed(t, out, "Secret", install.IssuerSecretName, &issuer)
	decodeNamed(t, out, "ConfigMap", install.ConfigMapName, &config)
	var installedIssuer *corev1.Secret
	for _, o := range objects {
		if s, ok := o.(*corev1.Secret); ok && s.Name == install.IssuerSecretName {
			installedIssuer = s
		}
	}
	if !bytes.Equal(issuer.Data["tls.crt"], installedIssuer.Data["tls.crt"]) || !bytes.Equal(issuer.Data["tls.key"], installedIssuer.Data["tls.key"]) {
		t.Error("the upgrade changed the issuer")
	}
	values, err := install.ParseValues([]byte(config.Data[install.ConfigKey]))
	if err != nil {
		t.Fatal(err)
	}
	if values.Proxy.LogLevel != "debug" || !values.Prometheus.Enabled || values.Namespace != "mesh-u" {
		t.Errorf("upgraded values: log level %q, prometheus %v, namespace %q", values.Proxy.LogLevel, values.Prometheus.Enabled, values.Namespace)
	}
	if !strings.Contains(out, "name: "+install.PrometheusName) {
		t.Error("the new add-on is not rendered")
	}
}

func TestUpgradeErrors(t *testing.T) {
	installed := installedObjects(t, "mesh-u")
	cases := map[string]struct {
		objects []runtime.Object
		args    func(o *upgradeOptions)
		want    string
	}{
		"not installed":   {nil, nil, "mesh install"},
		"namespace moved": {installed, func(o *upgradeOptions) { o.controlPlaneNamespace = "mesh-u"; o.set = []string{"namespace=other"} }, "uninstall it and install again"},
		"bad value":       {installed, func(o *upgradeOptions) { o.controlPlaneNamespace = "mesh-u"; o.set = []string{"proxy.logLevel=loud"} }, "proxy.logLevel"},
		"issuer is gone":  {withoutSecret(installed), func(o *upgradeOptions) { o.controlPlaneNamespace = "mesh-u" }, "read the issuer"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out, _, err := runUpgradeOn(t, fakeCluster(t, c.objects...), c.args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
			if out != "" {
				t.Error("wrote manifests after an error")
			}
		})
	}
}

func withoutSecret(objects []runtime.Object) []runtime.Object {
	var out []runtime.Object
	for _, o := range objects {
		if s, ok := o.(*corev1.Secret); ok && s.Name == install.IssuerSecretName {
			continue
		}
		out = append(out, o)
	}
	return out
}

// decodeNamed finds the document of kind and name in a YAML stream and decodes it.
func decodeNamed(t *testing.T, stream, kind, name string, out any) {
	t.Helper()
	for _, doc := range documents(stream) {
		if !strings.Contains(doc+"\n", "\nkind: "+kind+"\n") || !strings.Contains(doc, "  name: "+name+"\n") {
			continue
		}
		if err := yamlUnmarshal([]byte(doc), out); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no %s %s in the output", kind, name)
}
