package healthcheck_test

import (
	"context"
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck/healthchecktest"
)

const (
	cpNS  = "lightmesh"
	appNS = "shop"
	cli   = "1.2.3"
)

// run runs every check against client and returns the results by "category/id".
func run(t *testing.T, client kubernetes.Interface, opts healthcheck.Options, now time.Time) (map[string]check.Result, check.Results) {
	t.Helper()
	if opts.ControlPlaneNamespace == "" {
		opts.ControlPlaneNamespace = cpNS
	}
	if opts.Version == "" {
		opts.Version = cli
	}
	if opts.ClientGoVersion == "" {
		opts.ClientGoVersion = "v0.37.2"
	}
	opts.Clock = check.NewFakeClock(now)
	if opts.NewClient == nil {
		opts.NewClient = func() (kubernetes.Interface, error) { return client, nil }
	}
	if opts.NewDynamicClient == nil {
		dyn := healthchecktest.Dynamic(healthchecktest.InstalledCRDs()...)
		opts.NewDynamicClient = func() (dynamic.Interface, error) { return dyn, nil }
	}
	categories, err := healthcheck.New(opts).Categories()
	if err != nil {
		t.Fatal(err)
	}
	results, err := (&check.Runner{Clock: opts.Clock}).Run(context.Background(), categories)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]check.Result{}
	for _, r := range results.Results {
		byID[r.Category+"/"+r.ID] = r
	}
	return byID, results
}

// installed is a healthy installation whose images and proxies are the CLI's version.
func installed(t *testing.T, o healthchecktest.Options) *fake.Clientset {
	o.Installed = true
	return healthchecktest.Cluster(t, o)
}

func expect(t *testing.T, got map[string]check.Result, id string, want check.Status) {
	t.Helper()
	r, ok := got[id]
	if !ok {
		t.Fatalf("check %s did not run; ran %v", id, keys(got))
	}
	if r.Status != want {
		t.Errorf("check %s: %s (%s), want %s", id, r.Status, r.Error, want)
	}
	if want != check.StatusSuccess && (r.Hint == "" || r.HintURL != check.Anchor(r.Category, r.ID)) {
		t.Errorf("check %s: hint %q, anchor %q", id, r.Hint, r.HintURL)
	}
}

func keys(m map[string]check.Result) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func del(t *testing.T, client *fake.Clientset, resource, ns, name string) {
	t.Helper()
	gvr := map[string]struct{ group, version string }{
		"configmaps": {"", "v1"}, "secrets": {"", "v1"}, "namespaces": {"", "v1"}, "pods": {"", "v1"},
		"clusterroles": {"rbac.authorization.k8s.io", "v1"}, "clusterrolebindings": {"rbac.authorization.k8s.io", "v1"},
		"deployments": {"apps", "v1"},
	}[resource]
	if err := client.Tracker().Delete(schema.GroupVersionResource{Group: gvr.group, Version: gvr.version, Resource: resource}, ns, name); err != nil {
		t.Fatal(err)
	}
}

func TestHealthyInstallationPasses(t *testing.T) {
	client := installed(t, healthchecktest.Options{AppNamespace: appNS})
	opts := healthcheck.Options{Proxy: true, DataPlaneNamespace: appNS}
	// The fixture's images and proxies are the real version; the CLI here claims it too.
	opts.Version = versionOf(t, client)
	got, results := run(t, client, opts, healthchecktest.Now)
	for id, r := range got {
		if r.Status != check.StatusSuccess {
			t.Errorf("%s: %s: %s", id, r.Status, r.Error)
		}
	}
	if !results.Success() || len(got) < 20 {
		t.Errorf("success %v with %d checks", results.Success(), len(got))
	}
}

// versionOf returns the proxy version the fixture's meshed pods carry.
func versionOf(t *testing.T, client *fake.Clientset) string {
	t.Helper()
	pod, err := client.CoreV1().Pods(appNS).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod.Annotations["lightmesh.io/proxy-version"]
}

func TestKubernetesAPI(t *testing.T) {
	t.Run("no client", func(t *testing.T) {
		got, results := run(t, nil, healthcheck.Options{NewClient: func() (kubernetes.Interface, error) {
			return nil, errors.New("load the kubeconfig: no configuration")
		}}, healthchecktest.Now)
		expect(t, got, "kubernetes-api/client", check.StatusError)
		if len(got) != 1 || results.Skipped == 0 {
			t.Errorf("a fatal failure did not stop the run: %d results, %d skipped", len(got), results.Skipped)
		}
	})
	t.Run("cannot reach", func(t *testing.T) {
		client := healthchecktest.Cluster(t, healthchecktest.Options{})
		client.PrependReactor("get", "version", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("connection refused")
		})
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "kubernetes-api/reach", check.StatusError)
	})
	t.Run("cannot query", func(t *testing.T) {
		client := healthchecktest.Cluster(t, healthchecktest.Options{})
		client.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("forbidden")
		})
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "kubernetes-api/query", check.StatusError)
	})
}

func TestKubernetesVersion(t *testing.T) {
	cases := []struct {
		server, clientGo string
		server1, client1 check.Status
	}{
		{"v1.37.2", "v0.37.2", check.StatusSuccess, check.StatusSuccess},
		{"v1.30.0", "v0.31.0", check.StatusSuccess, check.StatusSuccess},
		{"v1.29.9", "v0.37.2", check.StatusError, check.StatusWarning},
		{"v1.37.2+k3s1", "v0.35.0", check.StatusSuccess, check.StatusWarning},
		{"v1.37.2", "unknown", check.StatusSuccess, check.StatusWarning},
	}
	for _, tc := range cases {
		t.Run(tc.server+"/"+tc.clientGo, func(t *testing.T) {
			client := healthchecktest.Cluster(t, healthchecktest.Options{ServerVersion: tc.server})
			got, _ := run(t, client, healthcheck.Options{Pre: true, ClientGoVersion: tc.clientGo}, healthchecktest.Now)
			expect(t, got, "kubernetes-version/server", tc.server1)
			expect(t, got, "kubernetes-version/client-go", tc.client1)
		})
	}
}

func TestPreInstall(t *testing.T) {
	t.Run("free", func(t *testing.T) {
		got, results := run(t, healthchecktest.Cluster(t, healthchecktest.Options{}), healthcheck.Options{Pre: true}, healthchecktest.Now)
		if !results.Success() {
			t.Errorf("pre-install checks of an empty cluster failed: %+v", results)
		}
		for _, id := range []string{"namespace-free", "can-create-namespaces", "can-create-clusterroles", "can-create-deployments", "can-create-secrets", "clock-skew"} {
			expect(t, got, "pre-install/"+id, check.StatusSuccess)
		}
	})
	t.Run("namespace taken", func(t *testing.T) {
		got, _ := run(t, installed(t, healthchecktest.Options{}), healthcheck.Options{Pre: true}, healthchecktest.Now)
		expect(t, got, "pre-install/namespace-free", check.StatusError)
	})
	t.Run("forbidden", func(t *testing.T) {
		client := healthchecktest.Cluster(t, healthchecktest.Options{})
		healthchecktest.Allow(client, []string{"clusterroles"})
		got, _ := run(t, client, healthcheck.Options{Pre: true}, healthchecktest.Now)
		expect(t, got, "pre-install/can-create-clusterroles", check.StatusError)
		expect(t, got, "pre-install/can-create-secrets", check.StatusSuccess)
	})
	t.Run("clock ahead", func(t *testing.T) {
		got, _ := run(t, healthchecktest.Cluster(t, healthchecktest.Options{}), healthcheck.Options{Pre: true}, healthchecktest.Now.Add(6*time.Minute))
		expect(t, got, "pre-install/clock-skew", check.StatusError)
	})
	t.Run("clock behind", func(t *testing.T) {
		got, _ := run(t, healthchecktest.Cluster(t, healthchecktest.Options{}), healthcheck.Options{Pre: true}, healthchecktest.Now.Add(-6*time.Minute))
		expect(t, got, "pre-install/clock-skew", check.StatusError)
	})
	t.Run("heartbeat only", func(t *testing.T) {
		// Without the Lease, the Ready heartbeat (4 minutes old) is what counts.
		client := healthchecktest.Cluster(t, healthchecktest.Options{})
		if err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(context.Background(), "node1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		got, _ := run(t, client, healthcheck.Options{Pre: true}, healthchecktest.Now)
		expect(t, got, "pre-install/clock-skew", check.StatusSuccess)
		got, _ = run(t, client, healthcheck.Options{Pre: true}, healthchecktest.Now.Add(2*time.Minute))
		expect(t, got, "pre-install/clock-skew", check.StatusError)
	})
}

func TestLightmeshConfig(t *testing.T) {
	t.Run("not installed", func(t *testing.T) {
		got, results := run(t, healthchecktest.Cluster(t, healthchecktest.Options{}), healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "lightmesh-config/namespace", check.StatusError)
		if results.Skipped == 0 || results.Success() {
			t.Errorf("no fatal stop: %+v", results)
		}
	})
	t.Run("namespace without lightmesh", func(t *testing.T) {
		client := healthchecktest.Cluster(t, healthchecktest.Options{})
		got, results := run(t, client, healthcheck.Options{ControlPlaneNamespace: "default"}, healthchecktest.Now)
		expect(t, got, "lightmesh-config/namespace", check.StatusSuccess)
		expect(t, got, "lightmesh-config/config", check.StatusError)
		if results.Skipped == 0 {
			t.Error("a missing lightmesh-config did not stop the run")
		}
	})
	cases := map[string]struct {
		breakIt func(t *testing.T, c *fake.Clientset)
		id      string
	}{
		"config missing": {func(t *testing.T, c *fake.Clientset) { del(t, c, "configmaps", cpNS, install.ConfigMapName) }, "config"},
		"config garbled": {func(t *testing.T, c *fake.Clientset) {
			setConfigMap(t, c, install.ConfigMapName, install.ConfigKey, "proxy: {logLevel: [}")
		}, "config"},
		"config of another namespace": {func(t *testing.T, c *fake.Clientset) {
			setConfigMap(t, c, install.ConfigMapName, install.ConfigKey, "namespace: other\n")
		}, "config"},
		"cluster role missing": {func(t *testing.T, c *fake.Clientset) {
			del(t, c, "clusterroles", "", "lightmesh-"+cpNS+"-controller")
		}, "cluster-roles"},
		"cluster role binding missing": {func(t *testing.T, c *fake.Clientset) {
			del(t, c, "clusterrolebindings", "", "lightmesh-"+cpNS+"-controller")
		}, "cluster-role-bindings"},
		"trust roots missing": {func(t *testing.T, c *fake.Clientset) {
			del(t, c, "configmaps", cpNS, install.TrustRootsConfigMapName)
		}, "trust-roots"},
		"trust roots empty": {func(t *testing.T, c *fake.Clientset) {
			setConfigMap(t, c, install.TrustRootsConfigMapName, install.TrustRootsKey, "")
		}, "trust-roots"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			client := installed(t, healthchecktest.Options{})
			got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
			expect(t, got, "lightmesh-config/"+tc.id, check.StatusSuccess)
			tc.breakIt(t, client)
			got, _ = run(t, client, healthcheck.Options{}, healthchecktest.Now)
			expect(t, got, "lightmesh-config/"+tc.id, check.StatusError)
		})
	}
}

func setConfigMap(t *testing.T, client *fake.Clientset, name, key, value string) {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps(cpNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[key] = value
	if _, err := client.CoreV1().ConfigMaps(cpNS).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestControlPlane(t *testing.T) {
	t.Run("healthy, other version", func(t *testing.T) {
		got, _ := run(t, installed(t, healthchecktest.Options{}), healthcheck.Options{Version: "9.9.9"}, healthchecktest.Now)
		expect(t, got, "control-plane/controller-available", check.StatusSuccess)
		expect(t, got, "control-plane/controller-pods-ready", check.StatusSuccess)
		expect(t, got, "control-plane/controller-version", check.StatusWarning)
	})
	t.Run("not available", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		d, err := client.AppsV1().Deployments(cpNS).Get(context.Background(), install.ControllerName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Message: "Deployment does not have minimum availability."}}
		if _, err := client.AppsV1().Deployments(cpNS).UpdateStatus(context.Background(), d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		healthchecktest.SetReady(t, client, cpNS, healthchecktest.ControllerPodName, false)
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "control-plane/controller-available", check.StatusError)
		expect(t, got, "control-plane/controller-pods-ready", check.StatusError)
	})
	t.Run("no deployment", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		del(t, client, "deployments", cpNS, install.ControllerName)
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "control-plane/controller-available", check.StatusError)
		expect(t, got, "control-plane/controller-pods-ready", check.StatusError)
	})
	t.Run("no pods", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		del(t, client, "pods", cpNS, healthchecktest.ControllerPodName)
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "control-plane/controller-pods-ready", check.StatusError)
	})
}

func TestIdentity(t *testing.T) {
	day := 24 * time.Hour
	cases := map[string]struct {
		opts healthchecktest.Options
		now  time.Time
		want map[string]check.Status
	}{
		"healthy": {healthchecktest.Options{}, healthchecktest.Now, map[string]check.Status{
			"trust-anchors-parse": check.StatusSuccess, "trust-anchors-valid": check.StatusSuccess, "trust-anchors-not-expiring-soon": check.StatusSuccess,
			"issuer-parse": check.StatusSuccess, "issuer-valid": check.StatusSuccess, "issuer-not-expiring-soon": check.StatusSuccess, "issuer-signed-by-anchors": check.StatusSuccess,
		}},
		"issuer expiring soon": {healthchecktest.Options{IssuerLifetime: 30 * day}, healthchecktest.Now, map[string]check.Status{
			"issuer-valid": check.StatusSuccess, "issuer-not-expiring-soon": check.StatusWarning, "trust-anchors-not-expiring-soon": check.StatusSuccess,
		}},
		"anchors expiring soon": {healthchecktest.Options{AnchorLifetime: 59 * day, IssuerLifetime: 20 * day}, healthchecktest.Now, map[string]check.Status{
			"trust-anchors-not-expiring-soon": check.StatusWarning, "issuer-not-expiring-soon": check.StatusWarning,
		}},
		"issuer expired": {healthchecktest.Options{IssuerLifetime: 30 * day}, healthchecktest.Now.Add(31 * day), map[string]check.Status{
			"issuer-valid": check.StatusError, "issuer-not-expiring-soon": check.StatusSuccess, "issuer-signed-by-anchors": check.StatusError, "trust-anchors-valid": check.StatusSuccess,
		}},
		"not valid yet": {healthchecktest.Options{}, healthchecktest.Now.Add(-time.Hour), map[string]check.Status{
			"issuer-valid": check.StatusError, "trust-anchors-valid": check.StatusError,
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, _ := run(t, installed(t, tc.opts), healthcheck.Options{}, tc.now)
			for id, want := range tc.want {
				expect(t, got, "identity/"+id, want)
			}
		})
	}
	t.Run("issuer of another anchor", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		other := installed(t, healthchecktest.Options{})
		otherRoots, err := other.CoreV1().ConfigMaps(cpNS).Get(context.Background(), install.TrustRootsConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		setConfigMap(t, client, install.TrustRootsConfigMapName, install.TrustRootsKey, otherRoots.Data[install.TrustRootsKey])
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "identity/trust-anchors-parse", check.StatusSuccess)
		expect(t, got, "identity/issuer-signed-by-anchors", check.StatusError)
	})
	t.Run("garbage", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		setConfigMap(t, client, install.TrustRootsConfigMapName, install.TrustRootsKey, "not a certificate")
		secret, err := client.CoreV1().Secrets(cpNS).Get(context.Background(), install.IssuerSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		delete(secret.Data, corev1.TLSCertKey)
		if _, err := client.CoreV1().Secrets(cpNS).Update(context.Background(), secret, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "identity/trust-anchors-parse", check.StatusError)
		expect(t, got, "identity/issuer-parse", check.StatusError)
	})
	t.Run("issuer secret missing", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		del(t, client, "secrets", cpNS, install.IssuerSecretName)
		got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
		expect(t, got, "identity/issuer-parse", check.StatusError)
	})
}

func TestDataPlane(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		got, _ := run(t, client, healthcheck.Options{Proxy: true, Version: versionOf(t, client)}, healthchecktest.Now)
		expect(t, got, "data-plane/proxies-ready", check.StatusSuccess)
		expect(t, got, "data-plane/proxy-version", check.StatusSuccess)
		if _, ok := got["data-plane/namespace"]; ok {
			t.Error("the namespace check ran without --namespace")
		}
	})
	t.Run("not ready, other version", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		healthchecktest.SetReady(t, client, appNS, "web", false)
		got, results := run(t, client, healthcheck.Options{Proxy: true, DataPlaneNamespace: appNS, Version: "9.9.9"}, healthchecktest.Now)
		expect(t, got, "data-plane/namespace", check.StatusSuccess)
		expect(t, got, "data-plane/proxies-ready", check.StatusError)
		expect(t, got, "data-plane/proxy-version", check.StatusWarning)
		if results.Success() {
			t.Error("an unready proxy passed")
		}
	})
	t.Run("no meshed pods", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		got, _ := run(t, client, healthcheck.Options{Proxy: true, DataPlaneNamespace: "default"}, healthchecktest.Now)
		expect(t, got, "data-plane/proxies-ready", check.StatusWarning)
	})
	t.Run("unmeshed and finished pods are left alone", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		done := healthchecktest.MeshedPod(appNS, "job", "0.0.1", false)
		done.Status.Phase = corev1.PodSucceeded
		plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: appNS}}
		for _, p := range []*corev1.Pod{done, plain} {
			if _, err := client.CoreV1().Pods(appNS).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := run(t, client, healthcheck.Options{Proxy: true, DataPlaneNamespace: appNS, Version: versionOf(t, client)}, healthchecktest.Now)
		expect(t, got, "data-plane/proxies-ready", check.StatusSuccess)
		expect(t, got, "data-plane/proxy-version", check.StatusSuccess)
	})
	t.Run("namespace missing", func(t *testing.T) {
		got, _ := run(t, installed(t, healthchecktest.Options{}), healthcheck.Options{Proxy: true, DataPlaneNamespace: "nope"}, healthchecktest.Now)
		expect(t, got, "data-plane/namespace", check.StatusError)
	})
}
