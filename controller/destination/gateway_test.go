package destination

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
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

// credPolicy is a policy source that also reads Gateway credentials (as the watcher does).
type credPolicy struct {
	*fakePolicy
	mu    sync.Mutex
	creds map[string]*policy.Credential // by "namespace/name"
}

func (c *credPolicy) GatewayCredential(namespace, name string, _ bool) (*policy.Credential, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cred, ok := c.creds[namespace+"/"+name]; ok {
		return cred, nil
	}
	return nil, fmt.Errorf("secret %s/%s does not exist", namespace, name)
}

func (c *credPolicy) setCredential(key string, cred *policy.Credential) {
	c.mu.Lock()
	c.creds[key] = cred
	c.mu.Unlock()
	c.set(c.Model()) // the watcher re-translates after a Secret event
}

// An HTTPS Gateway server's private key goes only to the ingress gateway's own identity
// (ServiceAccount lightmesh-ingress of the control plane namespace); a Secret change is
// streamed; a gateway pod of another ServiceAccount gets the listener without the key.
func TestGatewayPolicyCredentialsOnlyForTheIngressIdentity(t *testing.T) {
	model := gatewayModel("/")
	model.Gateways[0].Servers = append(model.Gateways[0].Servers, policy.GatewayServer{Port: 443, Protocol: "HTTPS", Hosts: []string{"shop.example.com"},
		TLS: &policy.GatewayTLS{Mode: policy.GatewayTLSSimple, CredentialName: "shop-cert"}})
	src := &credPolicy{fakePolicy: &fakePolicy{model: model}, creds: map[string]*policy.Credential{}}
	ingress := pod("lightmesh", "ingress-1", IngressServiceAccount, "lightmesh")
	ingress.Labels["istio"] = "ingressgateway"
	impostor := pod("lightmesh", "other-1", "other", "lightmesh")
	impostor.Labels["istio"] = "ingressgateway"
	e := newEnvWith(t, Options{Policy: src}, ingress, impostor)

	subscribe := func(caller, name string) (func() *policy.GatewayPolicy, context.CancelFunc) {
		ctx, cancel := context.WithCancel(e.ctx)
		msgs := make(chan *policy.GatewayPolicy, 10)
		done := make(chan error, 1)
		go func() {
			done <- e.service.SubscribeGatewayPolicy(ctx, caller, "lightmesh", name, func(m *destinationv1.GatewayPolicy) error {
				var p policy.GatewayPolicy
				if err := json.Unmarshal(m.GetPolicy(), &p); err != nil {
					t.Errorf("decode: %v", err)
				}
				msgs <- &p
				return nil
			})
		}()
		return func() *policy.GatewayPolicy {
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
		}, cancel
	}
	next, cancel := subscribe("spiffe://cluster.local/ns/lightmesh/sa/lightmesh-ingress", "ingress-1")
	defer cancel()
	l := next().ListenerForSNI(443, "shop.example.com")
	if l == nil || l.TLS.Credential != nil || !strings.Contains(l.TLS.Error, "lightmesh/shop-cert does not exist") {
		t.Fatalf("missing Secret: listener %+v", l)
	}
	src.setCredential("lightmesh/shop-cert", &policy.Credential{CertChain: "CERT", PrivateKey: "KEY"})
	if l := next().ListenerForSNI(443, "shop.example.com"); l == nil || l.TLS.Credential == nil || l.TLS.Credential.PrivateKey != "KEY" {
		t.Fatalf("after the Secret appeared: %+v", l)
	}

	nextOther, cancelOther := subscribe("spiffe://cluster.local/ns/lightmesh/sa/other", "other-1")
	defer cancelOther()
	if l := nextOther().ListenerForSNI(443, "shop.example.com"); l == nil || l.TLS.Credential != nil || !strings.Contains(l.TLS.Error, "only to the ingress gateway") {
		t.Errorf("another ServiceAccount's gateway pod got %+v", l)
	}
}
