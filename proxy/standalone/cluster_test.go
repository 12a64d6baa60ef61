package standalone

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/lightmesh/lightmesh/proxy/envoy"
)

func staticEnvoyCluster(lb string) envoy.Cluster {
	c := envoy.Cluster{Name: "c", Type: "STATIC", LbPolicy: lb, LoadAssignment: &envoy.ClusterLoadAssignment{}}
	var eps []envoy.LbEndpoint
	for _, p := range []uint32{1, 2, 3} {
		eps = append(eps, envoy.LbEndpoint{Endpoint: envoy.Endpoint{Address: envoy.Address{
			SocketAddress: &envoy.SocketAddress{Address: "127.0.0.1", PortValue: p}}}})
	}
	c.LoadAssignment.Endpoints = []envoy.LocalityLbEndpoints{{LbEndpoints: eps}}
	return c
}

func TestLoadBalancingPolicies(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rng := &lockedRand{r: rand.New(rand.NewPCG(3, 4))}
	for _, lb := range []string{"ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"} {
		t.Run(lb, func(t *testing.T) {
			cl, err := newCluster(staticEnvoyCluster(lb), nil, rng, log, nil)
			if err != nil {
				t.Fatal(err)
			}
			counts := map[string]int{}
			for range 300 {
				ep := cl.pick()
				counts[ep.addr]++
				ep.done()
			}
			for addr, n := range counts {
				if n < 70 || n > 130 {
					t.Errorf("%s got %d of 300: %v", addr, n, counts)
				}
			}
			if len(counts) != 3 {
				t.Errorf("counts = %v", counts)
			}
		})
	}
	t.Run("LEAST_REQUEST avoids busy endpoints", func(t *testing.T) {
		cl, _ := newCluster(staticEnvoyCluster("LEAST_REQUEST"), nil, rng, log, nil)
		busy := cl.eps[0]
		busy.active.Store(100)
		for range 100 {
			ep := cl.pick()
			if ep == busy && cl.eps[1].active.Load() < 50 {
				t.Fatal("picked the busy endpoint over an idle one")
			}
		}
	})
	if _, err := newCluster(envoy.Cluster{Name: "x", Type: "STATIC", LoadAssignment: &envoy.ClusterLoadAssignment{
		Endpoints: []envoy.LocalityLbEndpoints{{LbEndpoints: []envoy.LbEndpoint{{Endpoint: envoy.Endpoint{Address: envoy.Address{
			SocketAddress: &envoy.SocketAddress{Address: "svc.test", PortValue: 1}}}}}}}}}, nil, rng, log, nil); err == nil {
		t.Error("a STATIC cluster with a host name must be refused")
	}
}
