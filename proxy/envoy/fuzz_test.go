package envoy

import (
	"os"
	"testing"
)

// FuzzParse: the bootstrap loader never panics on any input, and what it accepts keeps its
// promises: every route and tcp_proxy names a defined cluster, and cluster names are unique.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/seed-envoy-config.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"static_resources": {"clusters": [{"name": "a", "type": "STATIC"}]}}`))
	f.Add([]byte("admin:\n  address:\n    socket_address: {address: 127.0.0.1, port_value: 9901}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		b, _, err := Parse(data, Options{AllowUnsupported: true})
		if err != nil {
			return
		}
		clusters := map[string]bool{}
		for _, c := range b.StaticResources.Clusters {
			if clusters[c.Name] {
				t.Fatalf("accepted two clusters named %q", c.Name)
			}
			clusters[c.Name] = true
		}
		for _, l := range b.StaticResources.Listeners {
			for _, fc := range l.FilterChains {
				for _, flt := range fc.Filters {
					if flt.TCPProxy != nil && !clusters[flt.TCPProxy.Cluster] {
						t.Fatalf("accepted a tcp_proxy to undefined cluster %q", flt.TCPProxy.Cluster)
					}
					if flt.HCM == nil || flt.HCM.RouteConfig == nil {
						continue
					}
					for _, vh := range flt.HCM.RouteConfig.VirtualHosts {
						for _, r := range vh.Routes {
							if r.Route == nil {
								continue
							}
							if r.Route.Cluster != "" && !clusters[r.Route.Cluster] {
								t.Fatalf("accepted a route to undefined cluster %q", r.Route.Cluster)
							}
							if wc := r.Route.WeightedClusters; wc != nil {
								for _, c := range wc.Clusters {
									if !clusters[c.Name] {
										t.Fatalf("accepted a weighted route to undefined cluster %q", c.Name)
									}
								}
							}
						}
					}
				}
			}
		}
	})
}
