package destination

import (
	"context"
	"encoding/json"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	"github.com/lightmesh/lightmesh/internal/policy"
)

// gatewayModel is a Gateway selecting istio=ingressgateway with a VirtualService bound to it.
func gatewayModel(prefix string) *policy.Model {
	return &policy.Model{
		Gateways: []policy.Gateway{{Namespace: "shop", Name: "gw", Selector: map[string]string{"istio": "ingressgateway"},
			Servers: []policy.GatewayServer{{Port: 80, Protocol: "HTTP", Hosts: []string{"*"}}}}},
		VirtualHosts: []policy.VirtualHost{{Source: "VirtualService shop/vs", Hosts: []string{"*"}, Gateways: []string{"shop/gw"},
			Routes: []policy.Route{{Match: policy.Match{Path: &policy.StringMatch{Kind: policy.MatchPrefix, Value: prefix}},
				Destinations: []policy.WeightedDestination{{Host: webFQDNHost, Port: 80, Weight: 1}}}}}},
	}
}

const webFQDNHost = "web.shop.svc.cluster.local"

func TestGatewayPolicyOfOwnPod(t *testing.T) {
	src := &fakePolicy{model: gatewayModel("/api")}
	gw := pod("shop", "ingress-1", "ingress", "lightmesh")
	gw.Labels["istio"] = "ingressgateway"
	e := newEnvWith(t, Options{Policy: src}, gw)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	msgs := make(chan *policy.GatewayPolicy, 10)
	done := make(chan error, 1)
	go func() {
		done <- e.service.SubscribeGatewayPolicy(ctx, "spiffe://cluster.local/ns/shop/sa/ingress", "shop", "ingress-1", func(m *destinationv1.GatewayPolicy) error {
			var p policy.GatewayPolicy
			if err := json.Unmarshal(m.GetPolicy(), &p); err != nil {
				t.Errorf("decode: %v", err)
			}
			msgs <- &p
			return nil
		})
	}()
	next := func() *policy.GatewayPolicy {
		t.Helper()
		select {
		case p := <-msgs:
			return p
		case err := <-done:
			t.Fatalf("the stream ended: %v", err)
		case <-e.ctx.Done():
			t.Fatal("no gateway policy in time")
		}
		return nil
	}
	p := next()
	vh, ok := p.Select(80, "shop.example.com")
	if !ok || vh.Routes[0].Match.Path.Value != "/api" {
		t.Fatalf("gateway policy %+v", p)
	}
	src.set(gatewayModel("/v2"))
	if vh, ok := next().Select(80, "x"); !ok || vh.Routes[0].Match.Path.Value != "/v2" {
		t.Errorf("after a change: %+v", vh)
	}

	err := e.service.SubscribeGatewayPolicy(e.ctx, "spiffe://cluster.local/ns/shop/sa/web", "shop", "ingress-1", func(*destinationv1.GatewayPolicy) error {
		t.Error("another identity got the gateway policy")
		return nil
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("another identity: %v, want PERMISSION_DENIED", err)
	}
}
