package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck/healthchecktest"
	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
	"github.com/lightmesh/lightmesh/internal/version"
)

// checkWith returns options that check client at healthchecktest.Now, as a CLI of this
// version built with client-go v0.37.2.
func checkWith(client kubernetes.Interface, args func(o *checkOptions)) *checkOptions {
	opts := newCheckOptions()
	dyn := healthchecktest.Dynamic(healthchecktest.InstalledCRDs()...)
	opts.clock = check.NewFakeClock(healthchecktest.Now)
	opts.newClient = func() (kubernetes.Interface, error) { return client, nil }
	opts.newDynamicClient = func() (dynamic.Interface, error) { return dyn, nil }
	opts.clientGoVersion = "v0.37.2"
	if args != nil {
		args(opts)
	}
	return opts
}

func runCheckOpts(t *testing.T, opts *checkOptions) (string, string, error) {
	t.Helper()
	if err := opts.validate(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := runCheck(context.Background(), nil, &out, &errOut, opts)
	return out.String(), errOut.String(), err
}

// broken is an installation with problems of each kind: a warning (the issuer expires in
// 30 days, a proxy of another version) and failures (the controller is not ready, a meshed
// pod is not ready).
func broken(t *testing.T) *fake.Clientset {
	client := healthchecktest.Cluster(t, healthchecktest.Options{Installed: true, AppNamespace: "shop", IssuerLifetime: 30 * 24 * time.Hour})
	healthchecktest.SetReady(t, client, install.DefaultValues().Namespace, healthchecktest.ControllerPodName, false)
	old := healthchecktest.MeshedPod("shop", "old", "0.0.9", false)
	if err := client.Tracker().Add(old); err != nil {
		t.Fatal(err)
	}
	return client
}

func TestCheckGolden(t *testing.T) {
	proxy := func(o *checkOptions) { o.proxy, o.namespace = true, "shop" }
	cases := []struct {
		name    string
		client  func(t *testing.T) *fake.Clientset
		opts    func(o *checkOptions)
		wantErr bool
	}{
		{"check-healthy.table", func(t *testing.T) *fake.Clientset {
			return healthchecktest.Cluster(t, healthchecktest.Options{Installed: true, AppNamespace: "shop"})
		}, proxy, false},
		{"check-pre.table", func(t *testing.T) *fake.Clientset {
			return healthchecktest.Cluster(t, healthchecktest.Options{})
		}, func(o *checkOptions) { o.pre = true }, false},
		{"check-broken.table", broken, proxy, true},
		{"check-broken.short", broken, func(o *checkOptions) { proxy(o); o.output = check.OutputShort }, true},
		{"check-broken.json", broken, func(o *checkOptions) { proxy(o); o.output = check.OutputJSON }, true},
		{"check-policy.table", policyProblems, func(o *checkOptions) {
			proxy(o)
			o.newDynamicClient = func() (dynamic.Interface, error) { return policyDynamic(), nil }
		}, true},
		{"check-not-installed.table", func(t *testing.T) *fake.Clientset {
			return healthchecktest.Cluster(t, healthchecktest.Options{})
		}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := runCheckOpts(t, checkWith(tc.client(t), tc.opts))
			if tc.wantErr != (err != nil) {
				t.Errorf("error %v, want an error: %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, errChecksFailed) {
				t.Errorf("error %v, want errChecksFailed", err)
			}
			if errOut != "" {
				t.Errorf("stderr without --wait: %q", errOut)
			}
			golden.Assert(t, tc.name, versionless(out))
		})
	}
}

// policyProblems is a healthy installation beside Istio, with a meshed pod whose proxy has
// a certificate from another trust anchor.
func policyProblems(t *testing.T) *fake.Clientset {
	client := healthchecktest.Cluster(t, healthchecktest.Options{Installed: true, AppNamespace: "shop"})
	if err := client.Tracker().Add(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system", Labels: map[string]string{"app": "istiod"}}}); err != nil {
		t.Fatal(err)
	}
	stranger := healthchecktest.NewIssuer(t)
	healthchecktest.ServeCertificates(client, func(ns, _ string) ([]byte, error) {
		return healthchecktest.LeafPEM(t, stranger, ns, identity.NewFakeClock(healthchecktest.Now)), nil
	})
	return client
}

// policyDynamic has the upstream Gateway API's HTTPRoute CRD and resources whose status
// says what lightmesh does not support.
func policyDynamic() dynamic.Interface {
	var objects []runtime.Object
	for _, o := range healthchecktest.InstalledCRDs() {
		u := o.(*unstructured.Unstructured)
		if u.GetName() == "httproutes.gateway.networking.k8s.io" {
			u.SetLabels(nil)
			u.SetAnnotations(map[string]string{"gateway.networking.k8s.io/bundle-version": "v1.3.0", "gateway.networking.k8s.io/channel": "standard"})
		}
		objects = append(objects, u)
	}
	objects = append(objects,
		healthchecktest.Resource("networking.istio.io/v1", "VirtualService", "shop", "reviews", map[string]any{
			"conditions": []any{map[string]any{"type": "Reconciled", "status": "False", "reason": "UnsupportedFields", "message": "spec.http[0].mirror: mirroring is not supported by lightmesh"}},
		}),
		healthchecktest.Resource("networking.istio.io/v1", "VirtualService", "shop", "fine", map[string]any{
			"conditions": []any{map[string]any{"type": "Reconciled", "status": "True"}},
		}),
		healthchecktest.Resource("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "web", map[string]any{
			"parents": []any{
				map[string]any{"controllerName": "lightmesh.io/mesh-controller", "conditions": []any{
					map[string]any{"type": "Accepted", "status": "False", "reason": "UnsupportedValue", "message": "spec.rules[0].filters[0]: CORS is not supported by lightmesh"},
				}},
				map[string]any{"controllerName": "example.com/other", "conditions": []any{
					map[string]any{"type": "Accepted", "status": "False", "message": "not ours to report"},
				}},
			},
		}),
	)
	return healthchecktest.Dynamic(objects...)
}

func TestCheckJSONIsValid(t *testing.T) {
	out, _, _ := runCheckOpts(t, checkWith(broken(t), func(o *checkOptions) { o.proxy, o.output = true, check.OutputJSON }))
	var report struct {
		Success    bool
		Categories []struct {
			CategoryName string
			Checks       []check.Result
		}
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if report.Success || len(report.Categories) != 7 {
		t.Errorf("success %v with %d categories, want failure in 7", report.Success, len(report.Categories))
	}
}

func TestCheckWarningsExitZero(t *testing.T) {
	client := healthchecktest.Cluster(t, healthchecktest.Options{Installed: true, IssuerLifetime: 30 * 24 * time.Hour})
	out, _, err := runCheckOpts(t, checkWith(client, nil))
	if err != nil {
		t.Errorf("warnings failed the run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "‼ the issuer certificate is not expiring soon") {
		t.Errorf("no warning about the issuer:\n%s", out)
	}
}

// With --wait, a failing check is re-run on the injected clock until it passes.
func TestCheckWaitRetries(t *testing.T) {
	client := healthchecktest.Cluster(t, healthchecktest.Options{Installed: true})
	gets := 0
	client.PrependReactor("get", "deployments", func(action k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		if gets > 2 {
			return false, nil, nil
		}
		obj, err := client.Tracker().Get(action.GetResource(), action.GetNamespace(), action.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment).DeepCopy()
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Message: "starting"}}
		return true, d, nil
	})
	clock := check.NewFakeClock(healthchecktest.Now)
	out, errOut, err := runCheckOpts(t, checkWith(client, func(o *checkOptions) { o.wait, o.clock = time.Minute, clock }))
	if err != nil {
		t.Errorf("the check did not pass after waiting: %v\n%s", err, out)
	}
	if !strings.Contains(errOut, `waiting for "the controller Deployment is available"`) {
		t.Errorf("stderr does not say what is waited for: %q", errOut)
	}
	if waited := clock.Now().Sub(healthchecktest.Now); waited != 2*check.DefaultInterval {
		t.Errorf("waited %s, want two intervals", waited)
	}

	// Without --wait, the same failure is final.
	gets = 0
	if _, _, err := runCheckOpts(t, checkWith(client, nil)); !errors.Is(err, errChecksFailed) {
		t.Errorf("without --wait: %v, want errChecksFailed", err)
	}
}

func TestCheckValidate(t *testing.T) {
	cases := map[string]func(o *checkOptions){
		"--output":                  func(o *checkOptions) { o.output = "yaml" },
		"--wait":                    func(o *checkOptions) { o.wait = -time.Second },
		"--pre":                     func(o *checkOptions) { o.pre, o.proxy = true, true },
		"--namespace":               func(o *checkOptions) { o.namespace = "shop" },
		"--control-plane-namespace": func(o *checkOptions) { o.controlPlaneNamespace = "Not_A_Name" },
	}
	for want, set := range cases {
		opts := newCheckOptions()
		set(opts)
		err := opts.validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error naming it", want, err)
		}
	}
	if err := newCheckOptions().validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// The command is registered, and its client error is the first check's failure.
func TestCheckCommandBadKubeconfig(t *testing.T) {
	out, _, err := execute(t, "", "--kubeconfig", "testdata/does-not-exist", "check", "-o", "short")
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("got %v, want errChecksFailed", err)
	}
	if !strings.Contains(out, "× can initialize the client") || !strings.Contains(out, "#kubernetes-api-client") {
		t.Errorf("output:\n%s", out)
	}
	if version.Version == "" {
		t.Error("no version")
	}
}
