package destination

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	"github.com/lightmesh/lightmesh/internal/policy"
)

const (
	webHost   = "web.shop.svc.cluster.local"
	webV2Host = "web-v2.shop.svc.cluster.local"
)

// splitModel sends 90 % of web's requests to web and 10 % to web-v2, with a
// DestinationRule for web, one for web-v2 (by a wildcard) and an unrelated one.
func splitModel(v2Weight uint32) *policy.Model {
	return &policy.Model{
		VirtualHosts: []policy.VirtualHost{{
			Source: "VirtualService shop/web", Hosts: []string{webHost}, Gateways: []string{policy.MeshGateway},
			Routes: []policy.Route{{Destinations: []policy.WeightedDestination{
				{Host: webHost, Weight: 90}, {Host: webV2Host, Weight: v2Weight},
			}}},
		}},
		Destinations: []policy.Destination{
			{Source: "DestinationRule shop/web", Host: webHost, TrafficPolicy: policy.TrafficPolicy{LoadBalancer: policy.LoadBalancerRoundRobin},
				Subsets: []policy.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}},
			{Source: "DestinationRule shop/all", Host: "*.shop.svc.cluster.local", TrafficPolicy: policy.TrafficPolicy{LoadBalancer: policy.LoadBalancerRandom}},
			{Source: "DestinationRule other/db", Host: "db.other.svc.cluster.local"},
		},
		PeerAuthentications: []policy.PeerAuthentication{
			{Namespace: "lightmesh", Name: "mesh", Mode: policy.ModePermissive},
			{Namespace: "shop", Name: "default", Mode: policy.ModeStrict},
		},
		AuthorizationPolicies: []policy.AuthorizationPolicy{
			{Namespace: "shop", Name: "web", Selector: map[string]string{"app": "web"}, Action: policy.ActionAllow,
				Rules: []policy.Rule{{From: []policy.Source{{Principals: []string{"cluster.local/ns/shop/sa/client"}}}}}},
			{Namespace: "shop", Name: "db", Selector: map[string]string{"app": "db"}, Action: policy.ActionDeny},
			{Namespace: "istio-system", Name: "global-deny-nothing", Action: policy.ActionAudit},
		},
	}
}

type policyStream[T any] struct {
	t    *testing.T
	msgs chan T
	done chan error
}

func (s *policyStream[T]) next() T {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case err := <-s.done:
		s.t.Fatalf("the subscription ended: %v", err)
	case <-time.After(waitFor):
		s.t.Fatalf("no policy within %s", waitFor)
	}
	var zero T
	return zero
}

func (e *env) subscribeOutbound(path string) *policyStream[*policy.OutboundPolicy] {
	ctx, cancel := context.WithCancel(e.ctx)
	e.t.Cleanup(cancel)
	s := &policyStream[*policy.OutboundPolicy]{t: e.t, msgs: make(chan *policy.OutboundPolicy, 10), done: make(chan error, 1)}
	go func() {
		s.done <- e.service.SubscribeOutboundPolicy(ctx, path, func(m *destinationv1.OutboundPolicy) error {
			var p policy.OutboundPolicy
			if m.GetFormat() != PolicyFormat {
				e.t.Errorf("format %q", m.GetFormat())
			}
			if err := json.Unmarshal(m.GetPolicy(), &p); err != nil {
				e.t.Errorf("decode: %v", err)
			}
			s.msgs <- &p
			return nil
		})
	}()
	return s
}

func (e *env) subscribeInbound(caller, ns, pod string) *policyStream[*policy.InboundPolicy] {
	ctx, cancel := context.WithCancel(e.ctx)
	e.t.Cleanup(cancel)
	s := &policyStream[*policy.InboundPolicy]{t: e.t, msgs: make(chan *policy.InboundPolicy, 10), done: make(chan error, 1)}
	go func() {
		s.done <- e.service.SubscribeInboundPolicy(ctx, caller, ns, pod, func(m *destinationv1.InboundPolicy) error {
			var p policy.InboundPolicy
			if err := json.Unmarshal(m.GetPolicy(), &p); err != nil {
				e.t.Errorf("decode: %v", err)
			}
			s.msgs <- &p
			return nil
		})
	}()
	return s
}

func destinationHosts(p *policy.OutboundPolicy) []string {
	var out []string
	for _, d := range p.Destinations {
		out = append(out, d.Host+"="+d.Source)
	}
	return out
}

func TestOutboundPolicyByEveryAuthorityForm(t *testing.T) {
	src := &fakePolicy{model: splitModel(10)}
	svc, p1, p2, p3 := webObjects()
	e := newEnvWith(t, Options{Policy: src}, svc, p1, p2, p3)
	for _, path := range []string{webFQDN, "web.shop:80", "10.96.0.5:80"} {
		p := e.subscribeOutbound(path).next()
		if p.Authority != webFQDN || p.VirtualHost == nil || p.VirtualHost.Source != "VirtualService shop/web" {
			t.Errorf("%s: authority %q, virtual host %+v", path, p.Authority, p.VirtualHost)
		}
		want := []string{webHost + "=DestinationRule shop/web", webV2Host + "=DestinationRule shop/all"}
		if got := destinationHosts(p); !slices.Equal(got, want) {
			t.Errorf("%s: destinations %v, want %v", path, got, want)
		}
	}
	// A service without routes gets no virtual host, and its wildcard DestinationRule.
	p := e.subscribeOutbound("api.shop.svc.cluster.local:8080").next()
	if p.VirtualHost != nil || !slices.Equal(destinationHosts(p), []string{"api.shop.svc.cluster.local=DestinationRule shop/all"}) {
		t.Errorf("no routes: %+v", p)
	}
}

func TestOutboundPolicyUpdatesOnChange(t *testing.T) {
	src := &fakePolicy{model: splitModel(10)}
	e := newEnvWith(t, Options{Policy: src})
	s := e.subscribeOutbound(webFQDN)
	if w := s.next().VirtualHost.Routes[0].Destinations[1].Weight; w != 10 {
		t.Fatalf("weight %d", w)
	}
	src.set(splitModel(50))
	if w := s.next().VirtualHost.Routes[0].Destinations[1].Weight; w != 50 {
		t.Fatalf("after the change: weight %d", w)
	}
	// An unrelated change sends nothing.
	m := splitModel(50)
	m.Destinations[2].TrafficPolicy.LoadBalancer = policy.LoadBalancerRandom
	src.set(m)
	src.set(splitModel(20))
	if w := s.next().VirtualHost.Routes[0].Destinations[1].Weight; w != 20 {
		t.Fatalf("after an unrelated change then a change: weight %d", w)
	}
}

func probedPod() *corev1.Pod {
	p := pod("shop", "web-1", "web", "lightmesh")
	p.Labels["app"] = "web"
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(9090)}}}
	p.Spec.Containers[0].StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}
	return p
}

func TestInboundPolicyOfOwnPod(t *testing.T) {
	src := &fakePolicy{model: splitModel(10)}
	e := newEnvWith(t, Options{Policy: src}, probedPod())
	s := e.subscribeInbound("spiffe://cluster.local/ns/shop/sa/web", "shop", "web-1")
	p := s.next()
	if p.PeerAuthentication.Mode != policy.ModeStrict || !slices.Equal(p.PeerAuthentication.Sources, []string{"lightmesh/mesh", "shop/default"}) {
		t.Errorf("peer authentication %+v", p.PeerAuthentication)
	}
	var names []string
	for _, ap := range p.AuthorizationPolicies {
		names = append(names, ap.Namespace+"/"+ap.Name)
	}
	if !slices.Equal(names, []string{"shop/web", "istio-system/global-deny-nothing"}) {
		t.Errorf("authorization policies %v", names)
	}
	if want := []policy.Probe{{Port: 8080, Path: "/healthz"}, {Port: 9090, Path: "/ready"}}; !slices.Equal(p.Probes, want) {
		t.Errorf("probes %v, want %v", p.Probes, want)
	}
	m := splitModel(10)
	m.PeerAuthentications = m.PeerAuthentications[:1]
	src.set(m)
	if p := s.next(); p.PeerAuthentication.Mode != policy.ModePermissive {
		t.Errorf("after the namespace policy is deleted: %+v", p.PeerAuthentication)
	}
}

func TestInboundPolicyRefusesOtherIdentities(t *testing.T) {
	e := newEnvWith(t, Options{Policy: &fakePolicy{model: splitModel(10)}}, probedPod())
	for _, caller := range []string{"spiffe://cluster.local/ns/shop/sa/client", "spiffe://cluster.local/ns/other/sa/web", "spiffe://evil.org/ns/shop/sa/web", ""} {
		err := e.service.SubscribeInboundPolicy(e.ctx, caller, "shop", "web-1", func(*destinationv1.InboundPolicy) error {
			t.Errorf("%q got a policy", caller)
			return nil
		})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%q: got %v, want PERMISSION_DENIED", caller, err)
		}
	}
	err := e.service.SubscribeInboundPolicy(e.ctx, "spiffe://cluster.local/ns/shop/sa/web", "shop", "", nil)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("no pod name: got %v", err)
	}
}
