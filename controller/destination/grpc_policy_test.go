package destination

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	controllerpolicy "github.com/lightmesh/lightmesh/controller/policy"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/policy"
)

type servedResources struct {
	mu     sync.Mutex
	served map[string][]string
}

func (d *servedResources) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	resources, ok := d.served[gv]
	if !ok {
		return nil, errors.New("not found")
	}
	list := &metav1.APIResourceList{GroupVersion: gv}
	for _, r := range resources {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: r, Namespaced: true})
	}
	return list, nil
}

var (
	vsGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	paGVR = schema.GroupVersionResource{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"}
)

func istioObject(apiVersion, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
}

func splitVirtualService(v2Weight int64) *unstructured.Unstructured {
	return istioObject("networking.istio.io/v1", "VirtualService", "shop", "web", map[string]any{
		"hosts": []any{"web"},
		"http": []any{map[string]any{"route": []any{
			map[string]any{"destination": map[string]any{"host": "web"}, "weight": 100 - v2Weight},
			map[string]any{"destination": map[string]any{"host": "web-v2"}, "weight": v2Weight},
		}}},
	})
}

// TestPolicyOverMutualTLS streams the policy translated from Istio resources by the real
// watcher over mTLS: outbound for any client, inbound for the pod's own identity only, and
// a new message after a resource changes.
func TestPolicyOverMutualTLS(t *testing.T) {
	listKinds := map[schema.GroupVersionResource]string{vsGVR: "VirtualServiceList", paGVR: "PeerAuthenticationList"}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds)
	ctx := context.Background()
	if _, err := dyn.Resource(vsGVR).Namespace("shop").Create(ctx, splitVirtualService(10), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pa := istioObject("security.istio.io/v1", "PeerAuthentication", "shop", "default", map[string]any{"mtls": map[string]any{"mode": "STRICT"}})
	if _, err := dyn.Resource(paGVR).Namespace("shop").Create(ctx, pa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	watcher, err := controllerpolicy.New(controllerpolicy.Options{
		Client: dyn, Discovery: &servedResources{served: map[string][]string{
			"networking.istio.io/v1": {"virtualservices"}, "security.istio.io/v1": {"peerauthentications"},
		}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, _, p2, p3 := webObjects()
	e := newEnvWith(t, Options{Policy: watcher}, svc, p2, p3, probedPod())
	watchCtx, stopWatch := context.WithCancel(e.ctx)
	watched := make(chan error, 1)
	go func() { watched <- watcher.Run(watchCtx) }()
	t.Cleanup(func() {
		stopWatch()
		if err := <-watched; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
	srv := serveTLS(t, e)

	webID, _ := meshid.NewSpiffeID("cluster.local", "shop", "web")
	clientID, _ := meshid.NewSpiffeID("cluster.local", "shop", "client")
	asWeb := srv.dial([]tls.Certificate{workloadCert(t, srv.issuer, webID)})
	asClient := srv.dial([]tls.Certificate{workloadCert(t, srv.issuer, clientID)})
	callCtx, cancel := context.WithTimeout(srv.ctx, waitFor)
	defer cancel()

	out, err := asClient.GetOutboundPolicy(callCtx, &destinationv1.GetDestination{Path: webFQDN})
	if err != nil {
		t.Fatal(err)
	}
	v2Weight := func() uint32 {
		t.Helper()
		for {
			m, err := out.Recv()
			if err != nil {
				t.Fatalf("outbound: %v", err)
			}
			var p policy.OutboundPolicy
			if err := json.Unmarshal(m.GetPolicy(), &p); err != nil || m.GetFormat() != PolicyFormat {
				t.Fatalf("outbound: format %q: %v", m.GetFormat(), err)
			}
			if p.VirtualHost != nil { // before the watcher's first translation: no routes
				return p.VirtualHost.Routes[0].Destinations[1].Weight
			}
		}
	}
	if w := v2Weight(); w != 10 {
		t.Fatalf("web-v2 weight %d, want 10", w)
	}

	in, err := asWeb.GetInboundPolicy(callCtx, &destinationv1.GetInboundPolicy{Namespace: "shop", Pod: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := in.Recv()
		if err != nil {
			t.Fatalf("inbound: %v", err)
		}
		var p policy.InboundPolicy
		if err := json.Unmarshal(m.GetPolicy(), &p); err != nil {
			t.Fatal(err)
		}
		if p.PeerAuthentication.Mode == policy.ModeStrict {
			break
		}
	}

	denied, err := asClient.GetInboundPolicy(callCtx, &destinationv1.GetInboundPolicy{Namespace: "shop", Pod: "web-1"})
	if err == nil {
		_, err = denied.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another identity: got %v, want PERMISSION_DENIED", err)
	}

	// A changed VirtualService reaches the open stream.
	vs, err := dyn.Resource(vsGVR).Namespace("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vs.Object["spec"] = splitVirtualService(30).Object["spec"]
	if _, err := dyn.Resource(vsGVR).Namespace("shop").Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := v2Weight(); w != 30 {
		t.Fatalf("after the change: web-v2 weight %d, want 30", w)
	}
}
