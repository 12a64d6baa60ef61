package destination

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
)

// policyServer is a fake destination service whose policy streams send what the test
// pushes; Get is fakeServer's.
type policyServer struct {
	*fakeServer
	outbound chan policyStream
	inbound  chan policyStream
	gateway  chan policyStream
}

type policyStream struct {
	target string // authority, or namespace/pod
	msgs   chan [2]string
}

func (p *policyServer) pump(ctx context.Context, target string, streams chan policyStream, send func(format, data string) error) error {
	s := policyStream{target: target, msgs: make(chan [2]string, 16)}
	select {
	case streams <- s:
	case <-ctx.Done():
		return nil
	}
	for {
		select {
		case m := <-s.msgs:
			if err := send(m[0], m[1]); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (p *policyServer) GetOutboundPolicy(req *destinationv1.GetDestination, stream destinationv1.Destination_GetOutboundPolicyServer) error {
	return p.pump(stream.Context(), req.GetPath(), p.outbound, func(format, data string) error {
		return stream.Send(&destinationv1.OutboundPolicy{Format: format, Policy: []byte(data)})
	})
}

func (p *policyServer) GetInboundPolicy(req *destinationv1.GetInboundPolicy, stream destinationv1.Destination_GetInboundPolicyServer) error {
	return p.pump(stream.Context(), req.GetNamespace()+"/"+req.GetPod(), p.inbound, func(format, data string) error {
		return stream.Send(&destinationv1.InboundPolicy{Format: format, Policy: []byte(data)})
	})
}

func (p *policyServer) GetGatewayPolicy(req *destinationv1.GetInboundPolicy, stream destinationv1.Destination_GetGatewayPolicyServer) error {
	return p.pump(stream.Context(), req.GetNamespace()+"/"+req.GetPod(), p.gateway, func(format, data string) error {
		return stream.Send(&destinationv1.GatewayPolicy{Format: format, Policy: []byte(data)})
	})
}

func servePolicy(t *testing.T, lis net.Listener) (*policyServer, func()) {
	t.Helper()
	p := &policyServer{fakeServer: &fakeServer{streams: make(chan fakeStream, 16)},
		outbound: make(chan policyStream, 16), inbound: make(chan policyStream, 16), gateway: make(chan policyStream, 16)}
	srv := grpc.NewServer()
	destinationv1.RegisterDestinationServer(srv, p)
	done := make(chan struct{})
	go func() { _ = srv.Serve(lis); close(done) }()
	return p, func() { srv.Stop(); <-done }
}

func nextPolicyStream(t *testing.T, streams chan policyStream) policyStream {
	t.Helper()
	select {
	case s := <-streams:
		return s
	case <-time.After(waitFor):
		t.Fatal("the client opened no policy stream")
	}
	return policyStream{}
}

func newPolicyClient(t *testing.T, addr string) *Client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := New(ctx, Options{
		Client: destinationv1.NewDestinationClient(conn), InitialTimeout: waitFor,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		PodNamespace: "shop", PodName: "web-1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func outboundJSON(t *testing.T, weight uint32) string {
	t.Helper()
	data, err := json.Marshal(policy.OutboundPolicy{
		Authority: "web.shop.svc.cluster.local:80",
		VirtualHost: &policy.VirtualHost{Hosts: []string{"web.shop.svc.cluster.local"}, Gateways: []string{policy.MeshGateway},
			Routes: []policy.Route{{Destinations: []policy.WeightedDestination{{Host: "web.shop.svc.cluster.local", Weight: weight}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func inboundJSON(t *testing.T, mode policy.PeerAuthnMode) string {
	t.Helper()
	data, err := json.Marshal(policy.InboundPolicy{PeerAuthentication: policy.WorkloadPeerAuthentication{Mode: mode}})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// poll waits until check holds (the state is updated by the client's goroutines).
func poll(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitFor)
		}
		time.Sleep(5 * time.Millisecond) // polling an eventually consistent view, bounded above
	}
}

func weightOf(p *policy.OutboundPolicy) uint32 {
	if p == nil || p.VirtualHost == nil {
		return 0
	}
	return p.VirtualHost.Routes[0].Destinations[0].Weight
}

// The policy client implements discovery.PolicySource: the first Outbound waits for the
// answer, Inbound follows the pod's stream opened at start, and both keep the last policy
// while the controller is away and follow the new streams once it is back.
func TestPolicyKeptAcrossControllerRestart(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	srv, stop := servePolicy(t, lis)
	var c discovery.PolicySource = newPolicyClient(t, addr)
	client := c.(*Client)

	in := nextPolicyStream(t, srv.inbound)
	if in.target != "shop/web-1" {
		t.Fatalf("inbound stream for %q", in.target)
	}
	if c.Inbound() != nil {
		t.Fatal("an inbound policy before any answer")
	}
	in.msgs <- [2]string{PolicyFormat, inboundJSON(t, policy.ModeStrict)}
	select {
	case <-client.InboundReady():
	case <-time.After(waitFor):
		t.Fatal("no inbound policy")
	}
	if got := c.Inbound().PeerAuthentication.Mode; got != policy.ModeStrict {
		t.Fatalf("inbound mode %s", got)
	}

	type answer struct {
		p   *policy.OutboundPolicy
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		p, err := c.Outbound(t.Context(), "WEB.shop.svc.cluster.local:80")
		answered <- answer{p, err}
	}()
	out := nextPolicyStream(t, srv.outbound)
	if out.target != "web.shop.svc.cluster.local:80" {
		t.Fatalf("outbound stream for %q", out.target)
	}
	out.msgs <- [2]string{PolicyFormat, outboundJSON(t, 7)}
	select {
	case a := <-answered:
		if a.err != nil || weightOf(a.p) != 7 {
			t.Fatalf("first Outbound: %+v, %v", a.p, a.err)
		}
	case <-time.After(waitFor):
		t.Fatal("the first Outbound did not return")
	}
	// A message in an unknown format is ignored; a new policy replaces the last.
	out.msgs <- [2]string{"lightmesh.policy.v9+cbor", "garbage"}
	out.msgs <- [2]string{PolicyFormat, outboundJSON(t, 8)}
	poll(t, "the second outbound policy", func() bool {
		p, _ := c.Outbound(t.Context(), "web.shop.svc.cluster.local:80")
		return weightOf(p) == 8
	})

	// The controller goes away: the last policies stay.
	stop()
	for range 3 {
		if p, err := c.Outbound(t.Context(), "web.shop.svc.cluster.local:80"); err != nil || weightOf(p) != 8 {
			t.Fatalf("while the controller is away: %+v, %v", p, err)
		}
		if c.Inbound() == nil || c.Inbound().PeerAuthentication.Mode != policy.ModeStrict {
			t.Fatalf("while the controller is away: inbound %+v", c.Inbound())
		}
	}

	// It comes back: the client reopens both streams and follows them.
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv2, stop2 := servePolicy(t, lis2)
	defer stop2()
	nextPolicyStream(t, srv2.inbound).msgs <- [2]string{PolicyFormat, inboundJSON(t, policy.ModePermissive)}
	nextPolicyStream(t, srv2.outbound).msgs <- [2]string{PolicyFormat, outboundJSON(t, 9)}
	poll(t, "the policies after the restart", func() bool {
		p, _ := c.Outbound(t.Context(), "web.shop.svc.cluster.local:80")
		in := c.Inbound()
		return weightOf(p) == 9 && in != nil && in.PeerAuthentication.Mode == policy.ModePermissive
	})
}

// An authority without a port gets no policy at once, without a stream.
func TestOutboundWithoutPortAnswersAtOnce(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, stop := servePolicy(t, lis)
	defer stop()
	c := newClient(t, lis.Addr().String())
	if p, err := c.Outbound(t.Context(), "web.shop.svc.cluster.local"); p != nil || err != nil {
		t.Fatalf("got %+v, %v", p, err)
	}
	select {
	case s := <-srv.outbound:
		t.Fatalf("a stream for %q", s.target)
	default:
	}
}

// Without a pod name no inbound stream is opened and Inbound is the defaults.
func TestPolicyWithoutPodHasNoInbound(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, stop := servePolicy(t, lis)
	defer stop()
	c := newClient(t, lis.Addr().String())
	if c.Inbound() != nil || c.InboundReady() != nil {
		t.Fatal("an inbound policy without a pod")
	}
	select {
	case s := <-srv.inbound:
		t.Fatalf("an inbound stream for %q", s.target)
	default:
	}
}

// Endpoint labels (for DestinationRule subsets) reach discovery.Endpoint.Labels.
func TestClientFillsEndpointLabels(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, stop := serve(t, lis)
	defer stop()
	c := newClient(t, lis.Addr().String())
	const authority = "web.shop.svc.cluster.local:80"
	go func() { _, _, _ = c.Resolve(t.Context(), discovery.Target{Authority: authority}) }()
	s := srv.next(t)
	u := addSet("", "10.0.0.1:8080")
	labels := map[string]string{"app": "web", "version": "v2"}
	u.GetAdd().GetAddrs()[0].Labels = labels
	s.updates <- u
	eventually(t, c, discovery.Target{Authority: authority}, "labels", func(d *discovery.Destination, found bool) bool {
		return found && len(d.Endpoints) == 1 && maps.Equal(d.Endpoints[0].Labels, labels)
	})
}

// A gateway proxy streams its pod's gateway policy; other proxies never open that stream.
func TestGatewayPolicyStream(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, stop := servePolicy(t, lis)
	defer stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := New(ctx, Options{
		Client: destinationv1.NewDestinationClient(conn), InitialTimeout: waitFor,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		PodNamespace: "lightmesh", PodName: "ingress-1", Gateway: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := nextPolicyStream(t, srv.gateway)
	if s.target != "lightmesh/ingress-1" {
		t.Errorf("gateway stream for %q", s.target)
	}
	if c.Gateway() != nil {
		t.Error("a gateway policy before the first answer")
	}
	data, err := json.Marshal(policy.GatewayPolicy{Listeners: []policy.GatewayListener{{Gateway: "shop/gw", Port: 80, Protocol: "HTTP", Hosts: []string{"*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.msgs <- [2]string{PolicyFormat, string(data)}
	poll(t, "the gateway policy", func() bool { g := c.Gateway(); return g != nil && len(g.Listeners) == 1 })
	s.msgs <- [2]string{"some.other+json", "{}"}
	s.msgs <- [2]string{PolicyFormat, string(data)}
	if g := c.Gateway(); g == nil || g.Listeners[0].Gateway != "shop/gw" {
		t.Errorf("gateway policy %+v", g)
	}

	plain := newPolicyClient(t, lis.Addr().String())
	if plain.Gateway() != nil {
		t.Error("a sidecar has a gateway policy")
	}
	select {
	case s := <-srv.gateway:
		t.Fatalf("a sidecar opened a gateway stream for %q", s.target)
	default:
	}
}
