package policy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"

	meshpolicy "github.com/lightmesh/lightmesh/internal/policy"
)

// waitFor bounds every wait of the tests.
const waitFor = 10 * time.Second

// fakeDiscovery serves the group versions it is given; safe for concurrent use.
type fakeDiscovery struct {
	mu     sync.Mutex
	served map[string][]string // group/version -> resources
}

func (d *fakeDiscovery) serve(groupVersion string, resources ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.served == nil {
		d.served = map[string][]string{}
	}
	d.served[groupVersion] = append(d.served[groupVersion], resources...)
}

func (d *fakeDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	resources, ok := d.served[gv]
	if !ok {
		return nil, errors.New("the server could not find the requested resource")
	}
	list := &metav1.APIResourceList{GroupVersion: gv}
	for _, r := range resources {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: r, Namespaced: true})
	}
	return list, nil
}

// listKinds are the list kinds of every version of every watched kind (the fake dynamic
// client needs them).
func listKinds() map[schema.GroupVersionResource]string {
	out := map[schema.GroupVersionResource]string{}
	for _, k := range Kinds {
		for _, v := range k.Versions {
			out[schema.GroupVersionResource{Group: k.Group, Version: v, Resource: k.Resource}] = k.Kind + "List"
		}
	}
	return out
}

// seedObjects reads the seed's Istio examples (demo/istio/*.yaml) verbatim; resources
// without a namespace go to "microservices", as `kubectl apply -n microservices` would.
func seedObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob("../../demo/istio/*.yaml")
	if err != nil || len(files) != 4 {
		t.Fatalf("seed files: %v %v", files, err)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeYAML(t, string(data))...)
	}
	return out
}

func decodeYAML(t *testing.T, text string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(text)), 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(err)
		}
		if obj == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetNamespace() == "" {
			u.SetNamespace("microservices")
		}
		u.SetGeneration(1)
		out = append(out, u)
	}
}

const httpRouteYAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: users-split
  namespace: microservices
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: user-service
    port: 80
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /api/users
    backendRefs:
    - name: user-service-v2
      port: 80
`

type env struct {
	t       *testing.T
	ctx     context.Context
	client  *dynamicfake.FakeDynamicClient
	disc    *fakeDiscovery
	watcher *Watcher
	changes chan struct{}
	done    chan error
	// translations counts the models published.
	translations *atomic.Int64
}

func newEnv(t *testing.T, disc *fakeDiscovery, objects ...*unstructured.Unstructured) *env {
	t.Helper()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds())
	for _, o := range objects {
		create(t, client, o)
	}
	w, err := New(Options{
		Client: client, Discovery: disc, RetryInterval: 20 * time.Millisecond, Coalesce: 5 * time.Millisecond,
		WriteStatus: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan struct{}, 1)
	translations := &atomic.Int64{}
	w.OnChange(func() {
		translations.Add(1)
		select {
		case changes <- struct{}{}:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return after its context ended")
		}
	})
	return &env{t: t, ctx: ctx, client: client, disc: disc, watcher: w, changes: changes, done: done, translations: translations}
}

// eventually polls cond until it holds or waitFor passes.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within %s", what, waitFor)
		}
		select {
		case <-e.changes:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// create creates obj at its kind's resource (the fake client's constructor guesses
// resources by kind, which loses objects of kinds with the same name in two groups).
func create(t *testing.T, client *dynamicfake.FakeDynamicClient, obj *unstructured.Unstructured) {
	t.Helper()
	gv, err := schema.ParseGroupVersion(obj.GetAPIVersion())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Kinds {
		if k.Group == gv.Group && k.Kind == obj.GetKind() {
			gvr := gv.WithResource(k.Resource)
			if _, err := client.Resource(gvr).Namespace(obj.GetNamespace()).Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no resource for %s", obj.GetKind())
}

func seedDiscovery() *fakeDiscovery {
	d := &fakeDiscovery{}
	d.serve("networking.istio.io/v1alpha3", "virtualservices", "destinationrules", "gateways")
	d.serve("security.istio.io/v1beta1", "peerauthentications", "authorizationpolicies")
	d.serve("gateway.networking.k8s.io/v1", "httproutes")
	return d
}

func hasVirtualHost(m *meshpolicy.Model, source string) bool {
	return slices.ContainsFunc(m.VirtualHosts, func(vh meshpolicy.VirtualHost) bool { return vh.Source == source })
}

func TestWatcherTranslatesSeedAndHTTPRoute(t *testing.T) {
	objects := append(seedObjects(t), decodeYAML(t, httpRouteYAML)...)
	e := newEnv(t, seedDiscovery(), objects...)
	e.eventually("synced", e.watcher.Synced)
	m := e.watcher.Model()
	for _, src := range []string{"VirtualService microservices/user-service", "VirtualService microservices/microservices-vs"} {
		if !hasVirtualHost(m, src) {
			t.Errorf("no virtual host from %s: %+v", src, m.VirtualHosts)
		}
	}
	if !slices.ContainsFunc(m.VirtualHosts, func(vh meshpolicy.VirtualHost) bool { return strings.HasPrefix(vh.Source, "HTTPRoute") }) {
		t.Errorf("no virtual host from the HTTPRoute: %+v", m.VirtualHosts)
	}
	if len(m.Destinations) != 1 || m.Destinations[0].Host != "user-service.microservices.svc.cluster.local" {
		t.Errorf("destinations: %+v", m.Destinations)
	}
	if len(m.PeerAuthentications) != 1 || m.PeerAuthentications[0].Mode != meshpolicy.ModeStrict {
		t.Errorf("peer authentications: %+v", m.PeerAuthentications)
	}
	if len(m.AuthorizationPolicies) != 1 || len(m.Gateways) != 1 {
		t.Errorf("authorization policies %+v, gateways %+v", m.AuthorizationPolicies, m.Gateways)
	}

	// A change is translated and announced.
	gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	if err := e.client.Resource(gvr).Namespace("microservices").Delete(e.ctx, "user-service", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the deleted VirtualService leaves the model", func() bool {
		return !hasVirtualHost(e.watcher.Model(), "VirtualService microservices/user-service")
	})
}

func TestWatcherPrefersNewestServedVersion(t *testing.T) {
	d := &fakeDiscovery{}
	d.serve("networking.istio.io/v1alpha3", "virtualservices", "destinationrules", "gateways")
	d.serve("networking.istio.io/v1", "virtualservices", "destinationrules", "gateways")
	d.serve("security.istio.io/v1beta1", "peerauthentications", "authorizationpolicies")
	e := newEnv(t, d)
	e.eventually("synced", e.watcher.Synced)
	got := e.watcher.Watched()
	want := []string{
		"networking.istio.io/v1, Resource=destinationrules", "networking.istio.io/v1, Resource=gateways",
		"networking.istio.io/v1, Resource=virtualservices",
		"security.istio.io/v1beta1, Resource=authorizationpolicies", "security.istio.io/v1beta1, Resource=peerauthentications",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("watched %v, want %v", got, want)
	}
}

// A kind whose CRD is absent is found once it is installed, without a restart.
func TestWatcherFindsCRDInstalledLater(t *testing.T) {
	d := &fakeDiscovery{}
	e := newEnv(t, d)
	e.eventually("synced", e.watcher.Synced)
	if got := e.watcher.Watched(); len(got) != 0 {
		t.Fatalf("watching %v without CRDs", got)
	}
	route := decodeYAML(t, httpRouteYAML)[0]
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	if _, err := e.client.Resource(gvr).Namespace("microservices").Create(e.ctx, route, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d.serve("gateway.networking.k8s.io/v1", "httproutes")
	e.eventually("the HTTPRoute is translated", func() bool {
		return hasVirtualHost(e.watcher.Model(), "HTTPRoute microservices/users-split")
	})
}

func statusUpdates(client *dynamicfake.FakeDynamicClient, name string) int {
	n := 0
	for _, a := range client.Actions() {
		u, ok := a.(clienttesting.UpdateAction)
		if ok && a.GetSubresource() == "status" && u.GetObject().(*unstructured.Unstructured).GetName() == name {
			n++
		}
	}
	return n
}

func conditions(t *testing.T, obj *unstructured.Unstructured, path ...string) map[string]map[string]any {
	t.Helper()
	list, _, _ := unstructured.NestedSlice(obj.Object, path...)
	out := map[string]map[string]any{}
	for _, c := range list {
		m := c.(map[string]any)
		out[m["type"].(string)] = m
	}
	return out
}

const statusYAML = `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: mirrored
  namespace: shop
spec:
  hosts: [web]
  http:
  - route:
    - destination: {host: web}
    bogusField: 1
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: broken
  namespace: shop
spec:
  hosts: [web]
  http:
  - timeout: soon
    route:
    - destination: {host: web}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: fine
  namespace: shop
spec:
  host: web
`

func TestWatcherWritesStatusOnce(t *testing.T) {
	objects := append(decodeYAML(t, statusYAML), decodeYAML(t, httpRouteYAML)...)
	e := newEnv(t, seedDiscovery(), objects...)
	e.eventually("synced", e.watcher.Synced)
	vs := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	dr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "destinationrules"}
	hr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	get := func(gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
		obj, err := e.client.Resource(gvr).Namespace(ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	e.eventually("every status written", func() bool {
		return statusUpdates(e.client, "mirrored") == 1 && statusUpdates(e.client, "broken") == 1 &&
			statusUpdates(e.client, "fine") == 1 && statusUpdates(e.client, "users-split") == 1
	})

	c := conditions(t, get(vs, "shop", "mirrored"), "status", "conditions")
	if c["Accepted"]["status"] != "True" || c["Reconciled"]["status"] != "False" || c["Reconciled"]["reason"] != ReasonUnsupportedFields ||
		!strings.Contains(c["Reconciled"]["message"].(string), "spec.http[0].bogusField") {
		t.Errorf("unsupported field: %v", c)
	}
	c = conditions(t, get(vs, "shop", "broken"), "status", "conditions")
	if c["Accepted"]["status"] != "False" || c["Accepted"]["reason"] != ReasonInvalid || !strings.Contains(c["Accepted"]["message"].(string), "spec.http[0].timeout") {
		t.Errorf("invalid resource: %v", c)
	}
	c = conditions(t, get(dr, "shop", "fine"), "status", "conditions")
	if c["Accepted"]["status"] != "True" || c["Reconciled"]["status"] != "True" {
		t.Errorf("supported resource: %v", c)
	}
	route := get(hr, "microservices", "users-split")
	parents, _, _ := unstructured.NestedSlice(route.Object, "status", "parents")
	if len(parents) != 1 {
		t.Fatalf("HTTPRoute parents: %v", parents)
	}
	parent := parents[0].(map[string]any)
	if parent["controllerName"] != ControllerName || parent["parentRef"].(map[string]any)["name"] != "user-service" {
		t.Errorf("HTTPRoute parent: %v", parent)
	}
	pc := map[string]string{}
	for _, c := range parent["conditions"].([]any) {
		m := c.(map[string]any)
		pc[m["type"].(string)] = m["status"].(string)
	}
	if pc["Accepted"] != "True" || pc["ResolvedRefs"] != "True" {
		t.Errorf("HTTPRoute conditions: %v", parent["conditions"])
	}

	// More changes (and the status writes' own events) translate again but write nothing
	// that did not change.
	for i := range 3 {
		fine := get(dr, "shop", "fine")
		fine.SetLabels(map[string]string{"touch": string(rune('a' + i))})
		if _, err := e.client.Resource(dr).Namespace("shop").Update(e.ctx, fine, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		before := e.translations.Load()
		e.eventually("the change is translated", func() bool { return e.translations.Load() > before })
	}
	// Fixing the broken resource writes its status once more.
	broken := get(vs, "shop", "broken")
	http, _, _ := unstructured.NestedSlice(broken.Object, "spec", "http")
	http[0].(map[string]any)["timeout"] = "5s"
	_ = unstructured.SetNestedSlice(broken.Object, http, "spec", "http")
	broken.SetGeneration(2)
	if _, err := e.client.Resource(vs).Namespace("shop").Update(e.ctx, broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the fixed resource's status", func() bool {
		c := conditions(t, get(vs, "shop", "broken"), "status", "conditions")
		return c["Accepted"]["status"] == "True" && c["Reconciled"]["status"] == "True"
	})
	for name, want := range map[string]int{"mirrored": 1, "broken": 2, "fine": 1, "users-split": 1} {
		if got := statusUpdates(e.client, name); got != want {
			t.Errorf("%s: %d status writes, want %d", name, got, want)
		}
	}
}
