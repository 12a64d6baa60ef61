package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
)

var certFlags = []string{
	"--identity-trust-anchors-file", anchorsFile,
	"--identity-issuer-certificate-file", issuerFile,
	"--identity-issuer-key-file", issuerKeyFile,
}

func installArgs(extra ...string) []string {
	return append(append([]string{"install", "--ignore-cluster"}, certFlags...), extra...)
}

// With the certificates given, the output is the same every time: golden files.
func TestInstallGolden(t *testing.T) {
	cases := map[string][]string{
		"install-default.yaml": installArgs(),
		"install-default.json": installArgs("-o", "json"),
		"install-custom.yaml": installArgs("-f", "testdata/values.yaml",
			"--set", "proxy.logLevel=debug", "--set", "controller.replicas=3", "--set", "proxy.skipOutboundPorts=5432"),
		"install-ha.yaml":      installArgs("--ha"),
		"install-ingress.yaml": installArgs("--ingress", "--set", "ingress.nodePort=30080", "--set", "tracing.enabled=true", "--set", "tracing.reporter.localAgentHostPort=jaeger-agent.observability:6831"),
		"install-addons.yaml":  installArgs("--set", "prometheus.enabled=true", "--set", "grafana.enabled=true", "--set", "jaeger.enabled=true", "--set", "namespace=mesh-obs"),
		"install-crds.yaml":    installArgs("--crds"),
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			first, errOut, err := execute(t, "", args...)
			if err != nil {
				t.Fatal(err)
			}
			if errOut != "" {
				t.Errorf("stderr: %s", errOut)
			}
			second, _, err := execute(t, "", args...)
			if err != nil {
				t.Fatal(err)
			}
			if first != second {
				t.Errorf("two runs differ:\n%s", golden.Diff("first", "second", first, second))
			}
			golden.Assert(t, name, versionless(first))
		})
	}
}

func TestShowValuesGolden(t *testing.T) {
	out, _, err := execute(t, "", "install", "--show-values", "--set", "namespace=mesh")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "install-show-values.yaml", versionless(out))
}

// Without certificate files, install generates a trust anchor and an issuer that chains to
// it; each run makes new ones.
func TestInstallGeneratesIdentity(t *testing.T) {
	material := func() (anchors []byte, issuerCert, issuerKey []byte) {
		out, errOut, err := execute(t, "", "install", "--ignore-cluster")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(errOut, "generated a trust anchor") {
			t.Errorf("stderr does not say the identity was generated: %q", errOut)
		}
		for _, doc := range strings.Split(out, "\n---\n") {
			var obj struct {
				Kind     string `json:"kind"`
				Metadata struct{ Name string }
				Data     map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatal(err)
			}
			switch obj.Metadata.Name {
			case install.TrustRootsConfigMapName:
				anchors = []byte(obj.Data[install.TrustRootsKey])
			case install.IssuerSecretName:
				var secret struct{ Data map[string][]byte }
				if err := yaml.Unmarshal([]byte(doc), &secret); err != nil {
					t.Fatal(err)
				}
				issuerCert, issuerKey = secret.Data["tls.crt"], secret.Data["tls.key"]
				if !bytes.Equal(secret.Data["ca.crt"], anchors) {
					t.Error("the issuer Secret's ca.crt is not the trust anchors")
				}
			}
		}
		return anchors, issuerCert, issuerKey
	}
	anchorsPEM, cert, key := material()
	anchors, err := identity.ParseTrustAnchors(anchorsPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.LoadIssuer(cert, key, anchors, nil); err != nil {
		t.Fatalf("the generated issuer does not load against the anchors: %v", err)
	}
	again, _, _ := material()
	if bytes.Equal(again, anchorsPEM) {
		t.Error("two runs generated the same trust anchor")
	}
}

func TestInstallChecksTheCluster(t *testing.T) {
	t.Run("already installed", func(t *testing.T) {
		c := fakeCluster(t, installedObjects(t, "mesh-a")...)
		out, err := runInstallOn(t, c, "namespace=mesh-a")
		if err == nil || !strings.Contains(err.Error(), "already installed") || !strings.Contains(err.Error(), "mesh upgrade") {
			t.Fatalf("error %v, want it to say to run mesh upgrade", err)
		}
		if out != "" {
			t.Error("wrote manifests after an error")
		}
	})
	t.Run("cluster down", func(t *testing.T) {
		opts := newInstallOptions()
		opts.cluster = func() (*meshCluster, error) { return nil, errors.New("connection refused") }
		err := runInstall(context.Background(), nil, &bytes.Buffer{}, &bytes.Buffer{}, opts)
		if err == nil || !strings.Contains(err.Error(), "--ignore-cluster") {
			t.Fatalf("error %v, want it to mention --ignore-cluster", err)
		}
	})
	t.Run("another namespace is installed", func(t *testing.T) {
		c := fakeCluster(t, installedObjects(t, "mesh-a")...)
		if _, err := runInstallOn(t, c, "namespace=mesh-b"); err != nil {
			t.Fatalf("install next to another installation: %v", err)
		}
	})
}

// Without --ignore-cluster, CRDs someone else installed are left out, ours are kept
// (applying them again updates them), and Istio running is pointed out.
func TestInstallLeavesForeignCRDsOut(t *testing.T) {
	objects := []runtime.Object{
		crdObject("httproutes.gateway.networking.k8s.io", map[string]string{"gateway.networking.k8s.io/bundle-version": "v1.3.0"}, nil),
		crdObject("virtualservices.networking.istio.io", nil, map[string]string{install.CRDOwnedLabel: "lightmesh"}),
		crdObject("gateways.networking.istio.io", nil, nil),
		istiod(),
	}
	c := fakeCluster(t, objects...)
	for _, crdsOnly := range []bool{false, true} {
		opts := newInstallOptions()
		opts.cluster = func() (*meshCluster, error) { return c, nil }
		opts.crds = crdsOnly
		var out, errOut bytes.Buffer
		if err := runInstall(context.Background(), nil, &out, &errOut, opts); err != nil {
			t.Fatal(err)
		}
		got := renderedNames(t, out.String())
		for name, want := range map[string]bool{
			"CustomResourceDefinition/httproutes.gateway.networking.k8s.io":    false,
			"CustomResourceDefinition/gateways.networking.istio.io":            false,
			"CustomResourceDefinition/virtualservices.networking.istio.io":     true,
			"CustomResourceDefinition/destinationrules.networking.istio.io":    true,
			"CustomResourceDefinition/authorizationpolicies.security.istio.io": true,
			"Namespace/lightmesh": !crdsOnly,
		} {
			if slices.Contains(got, name) != want {
				t.Errorf("crds only %v: %s rendered %v, want %v", crdsOnly, name, !want, want)
			}
		}
		if crdsOnly && len(got) != 4 {
			t.Errorf("--crds rendered %v", got)
		}
		for _, say := range []string{"httproutes.gateway.networking.k8s.io exists and is not lightmesh's (the upstream Gateway API v1.3.0)", "gateways.networking.istio.io exists", "Istio itself is installed (istiod in istio-system)"} {
			if !strings.Contains(errOut.String(), say) {
				t.Errorf("stderr does not say %q:\n%s", say, errOut.String())
			}
		}
	}
}

func runInstallOn(t *testing.T, c *meshCluster, set ...string) (string, error) {
	t.Helper()
	opts := newInstallOptions()
	opts.cluster = func() (*meshCluster, error) { return c, nil }
	opts.set = set
	var out bytes.Buffer
	err := runInstall(context.Background(), nil, &out, &bytes.Buffer{}, opts)
	return out.String(), err
}

func TestInstallValidate(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"bad output":         {[]string{"install", "--ignore-cluster", "-o", "toml"}, "--output"},
		"one cert file":      {[]string{"install", "--ignore-cluster", "--identity-trust-anchors-file", anchorsFile}, "all three"},
		"unknown value":      {[]string{"install", "--ignore-cluster", "--set", "proxy.colour=blue"}, "proxy.colour"},
		"group value":        {[]string{"install", "--ignore-cluster", "--set", "proxy=x"}, "group of values"},
		"not key=value":      {[]string{"install", "--ignore-cluster", "--set", "proxy.logLevel"}, "key=value"},
		"wrong type":         {[]string{"install", "--ignore-cluster", "--set", "controller.replicas=many"}, "controller.replicas"},
		"bad log level":      {[]string{"install", "--ignore-cluster", "--set", "proxy.logLevel=loud"}, "proxy.logLevel"},
		"bad quantity":       {[]string{"install", "--ignore-cluster", "--set", "controller.resources.limits.cpu=fast"}, "controller.resources.limits.cpu"},
		"bad ports":          {[]string{"install", "--ignore-cluster", "--set", "proxy.opaquePorts=3306,0"}, "proxy.opaquePorts"},
		"bad namespace":      {[]string{"install", "--ignore-cluster", "--set", "namespace=Light_Mesh"}, "namespace"},
		"bad trust domain":   {[]string{"install", "--ignore-cluster", "--set", "identity.trustDomain=Cluster.Local"}, "identity.trustDomain"},
		"zero replicas":      {[]string{"install", "--ignore-cluster", "--set", "controller.replicas=0"}, "controller.replicas"},
		"unknown file key":   {[]string{"install", "--ignore-cluster", "-f", "testdata/values-unknown-key.yaml"}, "unknown field"},
		"missing file":       {[]string{"install", "--ignore-cluster", "-f", "testdata/nope.yaml"}, "no such file"},
		"wrong issuer key":   {[]string{"install", "--ignore-cluster", "--identity-trust-anchors-file", anchorsFile, "--identity-issuer-certificate-file", issuerFile, "--identity-issuer-key-file", anchorsFile}, "issuer key"},
		"issuer not trusted": {[]string{"install", "--ignore-cluster", "--identity-trust-anchors-file", "testdata/other-ca.crt", "--identity-issuer-certificate-file", issuerFile, "--identity-issuer-key-file", issuerKeyFile}, "does not chain"},
		"request over limit": {[]string{"install", "--ignore-cluster", "--set", "proxy.resources.requests.memory=1Gi"}, "above its limit"},
		"arguments":          {[]string{"install", "extra"}, "unknown command"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out, _, err := execute(t, "", c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
			if out != "" {
				t.Error("wrote to stdout after an error")
			}
		})
	}
}

// What install puts into lightmesh-config is what inject reads back: the same trust
// anchors, images and settings.
func TestInstalledConfigFeedsInject(t *testing.T) {
	out, _, err := execute(t, "", installArgs("-o", "json", "--set", "proxy.logLevel=warn", "--set", "namespace=mesh-x")...)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Kind     string
			Metadata struct{ Name, Namespace string }
			Data     map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var config, roots string
	for _, item := range list.Items {
		switch item.Metadata.Name {
		case install.ConfigMapName:
			config = item.Data[install.ConfigKey]
			if item.Metadata.Namespace != "mesh-x" {
				t.Errorf("lightmesh-config is in namespace %q", item.Metadata.Namespace)
			}
		case install.TrustRootsConfigMapName:
			roots = item.Data[install.TrustRootsKey]
		}
	}
	values, err := install.ParseValues([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := values.InjectConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TrustAnchorsPEM != roots || roots == "" {
		t.Error("lightmesh-config's trust anchors are not the trust roots ConfigMap's")
	}
	if cfg.LogLevel != "warn" || cfg.ControlPlaneNamespace != "mesh-x" {
		t.Errorf("config read back: log level %q, namespace %q", cfg.LogLevel, cfg.ControlPlaneNamespace)
	}
}
