package healthcheck_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck"
	"github.com/lightmesh/lightmesh/internal/check/healthcheck/healthchecktest"
	"github.com/lightmesh/lightmesh/internal/identity"
)

func withDynamic(objects ...runtime.Object) healthcheck.Options {
	dyn := healthchecktest.Dynamic(objects...)
	return healthcheck.Options{NewDynamicClient: func() (dynamic.Interface, error) { return dyn, nil }}
}

func TestPolicy(t *testing.T) {
	t.Run("installed by lightmesh", func(t *testing.T) {
		got, _ := run(t, installed(t, healthchecktest.Options{}), healthcheck.Options{}, healthchecktest.Now)
		for _, id := range []string{"crds", "gateway-api", "istio", "unsupported-fields"} {
			expect(t, got, "policy/"+id, check.StatusSuccess)
		}
		if d := got["policy/gateway-api"].Detail; d != "lightmesh's" {
			t.Errorf("gateway-api detail %q", d)
		}
	})
	t.Run("CRDs missing", func(t *testing.T) {
		crds := healthchecktest.InstalledCRDs()
		got, _ := run(t, installed(t, healthchecktest.Options{}), withDynamic(crds[1:]...), healthchecktest.Now)
		expect(t, got, "policy/crds", check.StatusError)
		if !strings.Contains(got["policy/crds"].Error, "does not exist") {
			t.Errorf("error %q", got["policy/crds"].Error)
		}
		got, _ = run(t, installed(t, healthchecktest.Options{}), withDynamic(), healthchecktest.Now)
		expect(t, got, "policy/gateway-api", check.StatusError)
	})
	t.Run("upstream Gateway API without v1", func(t *testing.T) {
		var objects []runtime.Object
		for _, o := range healthchecktest.InstalledCRDs() {
			u := o.(*unstructured.Unstructured)
			if u.GetName() == "httproutes.gateway.networking.k8s.io" {
				u.SetLabels(nil)
				u.SetAnnotations(map[string]string{healthcheck.GatewayAPIBundleVersion: "v0.5.1"})
				versions, _, _ := unstructured.NestedSlice(u.Object, "spec", "versions")
				versions[0].(map[string]any)["name"] = "v1beta1"
				if err := unstructured.SetNestedSlice(u.Object, versions, "spec", "versions"); err != nil {
					t.Fatal(err)
				}
			}
			objects = append(objects, o)
		}
		got, _ := run(t, installed(t, healthchecktest.Options{}), withDynamic(objects...), healthchecktest.Now)
		expect(t, got, "policy/gateway-api", check.StatusError)
		if !strings.Contains(got["policy/gateway-api"].Error, "serves v1beta1, not v1") {
			t.Errorf("error %q", got["policy/gateway-api"].Error)
		}
	})
	t.Run("Istio and unsupported fields", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{})
		if err := client.Tracker().Add(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system", Labels: map[string]string{"app": "istiod"}}}); err != nil {
			t.Fatal(err)
		}
		objects := append(healthchecktest.InstalledCRDs(),
			healthchecktest.Resource("security.istio.io/v1", "AuthorizationPolicy", "shop", "deny", map[string]any{
				"conditions": []any{map[string]any{"type": "Accepted", "status": "False", "reason": "UnsupportedFields", "message": "spec.rules[0].to[0].operation.notMethods: not supported"}},
			}),
			healthchecktest.Resource("networking.istio.io/v1", "DestinationRule", "shop", "ok", map[string]any{
				"conditions": []any{map[string]any{"type": "Reconciled", "status": "True", "message": "fine"}},
			}),
			// Invalid: the controller writes the same message on both conditions.
			healthchecktest.Resource("networking.istio.io/v1", "DestinationRule", "shop", "bad", map[string]any{
				"conditions": []any{
					map[string]any{"type": "Accepted", "status": "False", "reason": "Invalid", "message": "spec.host: empty"},
					map[string]any{"type": "Reconciled", "status": "False", "reason": "Invalid", "message": "spec.host: empty"},
				},
			}),
			// Accepted, with fields it does not apply named in the message.
			healthchecktest.Resource("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "split", map[string]any{
				"parents": []any{map[string]any{"controllerName": healthcheck.ControllerName, "conditions": []any{
					map[string]any{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "attached to the Service by lightmesh; " + healthcheck.UnsupportedMarker + ": spec.hostnames: ignored"},
					map[string]any{"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "every backendRef is resolved"},
				}}},
			}))
		dyn := healthchecktest.Dynamic(objects...)
		// An HTTPS Gateway server whose credentialName Secret is missing (created through the
		// client: the fake's constructor files kind Gateway under another resource).
		gateway := healthchecktest.Resource("networking.istio.io/v1", "Gateway", "shop", "https", map[string]any{
			"conditions": []any{
				map[string]any{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "translated to lightmesh's policy"},
				map[string]any{"type": "ResolvedRefs", "status": "False", "reason": "InvalidCertificateRef", "message": "the HTTPS server on port 443 (hosts shop.example.com): secret lightmesh/shop-cert does not exist"},
			},
		})
		gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "gateways"}
		if _, err := dyn.Resource(gvr).Namespace("shop").Create(context.Background(), gateway, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got, _ := run(t, client, healthcheck.Options{NewDynamicClient: func() (dynamic.Interface, error) { return dyn, nil }}, healthchecktest.Now)
		expect(t, got, "policy/istio", check.StatusWarning)
		expect(t, got, "policy/unsupported-fields", check.StatusWarning)
		want := "AuthorizationPolicy shop/deny: UnsupportedFields: spec.rules[0].to[0].operation.notMethods: not supported\n" +
			"DestinationRule shop/bad: Invalid: spec.host: empty\n" +
			"Gateway shop/https: InvalidCertificateRef: the HTTPS server on port 443 (hosts shop.example.com): secret lightmesh/shop-cert does not exist\n" +
			"HTTPRoute shop/split: Accepted: " + healthcheck.UnsupportedMarker + ": spec.hostnames: ignored"
		if e := got["policy/unsupported-fields"].Error; e != want {
			t.Errorf("unsupported-fields says %q", e)
		}
	})
}

func TestProxyCertificates(t *testing.T) {
	proxy := healthcheck.Options{Proxy: true, DataPlaneNamespace: appNS}
	t.Run("chains", func(t *testing.T) {
		got, _ := run(t, installed(t, healthchecktest.Options{AppNamespace: appNS}), proxy, healthchecktest.Now)
		expect(t, got, "data-plane/proxy-certificates", check.StatusSuccess)
	})
	t.Run("another anchor", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		stranger := healthchecktest.NewIssuer(t)
		healthchecktest.ServeCertificates(client, func(ns, _ string) ([]byte, error) {
			return healthchecktest.LeafPEM(t, stranger, ns, identity.NewFakeClock(healthchecktest.Now)), nil
		})
		got, _ := run(t, client, proxy, healthchecktest.Now)
		expect(t, got, "data-plane/proxy-certificates", check.StatusError)
		if !strings.Contains(got["data-plane/proxy-certificates"].Error, "pod shop/web: certificate") {
			t.Errorf("error %q", got["data-plane/proxy-certificates"].Error)
		}
	})
	t.Run("expired", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		got, _ := run(t, client, proxy, healthchecktest.Now.AddDate(0, 0, 30))
		expect(t, got, "data-plane/proxy-certificates", check.StatusError)
	})
	t.Run("no endpoint", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		healthchecktest.ServeCertificates(client, func(string, string) ([]byte, error) {
			return nil, errNotFound()
		})
		got, _ := run(t, client, proxy, healthchecktest.Now)
		expect(t, got, "data-plane/proxy-certificates", check.StatusWarning)
	})
	t.Run("refused to the pod proxy", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		healthchecktest.ServeCertificates(client, func(string, string) ([]byte, error) {
			return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods/proxy"}, "web", errors.New("forbidden host"))
		})
		got, _ := run(t, client, proxy, healthchecktest.Now)
		expect(t, got, "data-plane/proxy-certificates", check.StatusWarning)
		if e := got["data-plane/proxy-certificates"].Error; !strings.Contains(e, "shop/web (") || !strings.Contains(e, "forbidden host") {
			t.Errorf("warning %q does not name the pod and the answer", e)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		client := installed(t, healthchecktest.Options{AppNamespace: appNS})
		healthchecktest.ServeCertificates(client, func(string, string) ([]byte, error) {
			return nil, errors.New("dial tcp: connection refused")
		})
		got, _ := run(t, client, proxy, healthchecktest.Now)
		expect(t, got, "data-plane/proxy-certificates", check.StatusError)
	})
}

func errNotFound() error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: "pods/proxy"}, "web")
}

func TestPolicyConflicts(t *testing.T) {
	withSpec := func(u *unstructured.Unstructured, spec map[string]any) *unstructured.Unstructured {
		u.Object["spec"] = spec
		return u
	}
	route := func(host string) map[string]any {
		return map[string]any{"hosts": []any{host}, "http": []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": host}}}}}}
	}
	dr := map[string]any{"host": "user-service", "trafficPolicy": map[string]any{"loadBalancer": map[string]any{"simple": "ROUND_ROBIN"}}}
	strict := map[string]any{"mtls": map[string]any{"mode": "STRICT"}}
	objects := append(healthchecktest.InstalledCRDs(),
		withSpec(healthchecktest.Resource("networking.istio.io/v1", "VirtualService", "shop", "a", nil), route("user-service")),
		withSpec(healthchecktest.Resource("networking.istio.io/v1", "VirtualService", "shop", "b", nil), route("user-service")),
		withSpec(healthchecktest.Resource("networking.istio.io/v1", "VirtualService", "shop", "only", nil), route("order-service")),
		withSpec(healthchecktest.Resource("networking.istio.io/v1", "DestinationRule", "shop", "one", nil), dr),
		withSpec(healthchecktest.Resource("networking.istio.io/v1", "DestinationRule", "shop", "two", nil), dr),
		withSpec(healthchecktest.Resource("security.istio.io/v1", "PeerAuthentication", "shop", "default", nil), strict),
		withSpec(healthchecktest.Resource("security.istio.io/v1", "PeerAuthentication", "shop", "other", nil), strict),
		withSpec(healthchecktest.Resource("security.istio.io/v1", "PeerAuthentication", "web", "default", nil), strict),
	)
	got, _ := run(t, installed(t, healthchecktest.Options{}), withDynamic(objects...), healthchecktest.Now)
	expect(t, got, "policy/conflicts", check.StatusWarning)
	want := "host user-service.shop.svc.cluster.local has DestinationRule shop/one and DestinationRule shop/two: only the oldest applies\n" +
		"host user-service.shop.svc.cluster.local is routed by VirtualService shop/a and VirtualService shop/b: only the oldest applies\n" +
		"namespace shop has 2 namespace-wide PeerAuthentications (default, other): only the oldest applies"
	if e := got["policy/conflicts"].Error; e != want {
		t.Errorf("conflicts:\n%s\nwant:\n%s", e, want)
	}
	clean, _ := run(t, installed(t, healthchecktest.Options{}), withDynamic(append(healthchecktest.InstalledCRDs(), objects[len(objects)-1])...), healthchecktest.Now)
	expect(t, clean, "policy/conflicts", check.StatusSuccess)
}

func TestWebhookConfiguration(t *testing.T) {
	client := installed(t, healthchecktest.Options{})
	got, _ := run(t, client, healthcheck.Options{}, healthchecktest.Now)
	expect(t, got, "lightmesh-config/webhook", check.StatusSuccess)

	name := "lightmesh-proxy-injector-lightmesh"
	wh, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wh.Webhooks[0].ClientConfig.CABundle = nil
	wh.Webhooks[0].ClientConfig.Service.Namespace = "elsewhere"
	if _, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(t.Context(), wh, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ = run(t, client, healthcheck.Options{}, healthchecktest.Now)
	expect(t, got, "lightmesh-config/webhook", check.StatusError)
	if e := got["lightmesh-config/webhook"].Error; !strings.Contains(e, "calls Service elsewhere/webhook") || !strings.Contains(e, "no caBundle") {
		t.Errorf("error %q", e)
	}
	if err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ = run(t, client, healthcheck.Options{}, healthchecktest.Now)
	expect(t, got, "lightmesh-config/webhook", check.StatusError)
}
