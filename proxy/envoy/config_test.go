package envoy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSeedFile(t *testing.T) {
	bs, probs, err := ParseFile("testdata/seed-envoy-config.yaml", Options{})
	if err != nil {
		t.Fatalf("the seed config must parse: %v", err)
	}
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	ls := bs.StaticResources.Listeners
	if len(ls) != 1 || ls[0].Address.SocketAddress.HostPort() != "0.0.0.0:8080" {
		t.Fatalf("listeners = %+v", ls)
	}
	hcm := ls[0].FilterChains[0].Filters[0].HCM
	if hcm == nil || hcm.StatPrefix != "ingress_http" || len(hcm.RouteConfig.VirtualHosts[0].Routes) != 2 {
		t.Fatalf("hcm = %+v", hcm)
	}
	if got := *hcm.RouteConfig.VirtualHosts[0].Routes[1].Match.Prefix; got != "/api/orders" {
		t.Fatalf("route 1 prefix = %q", got)
	}
	cs := bs.StaticResources.Clusters
	if len(cs) != 2 || cs[0].Type != "LOGICAL_DNS" || cs[0].ConnectTimeout.Duration != 250*time.Millisecond {
		t.Fatalf("clusters = %+v", cs)
	}
	if a := cs[1].Addresses(); len(a) != 1 || a[0].HostPort() != "order-service:80" {
		t.Fatalf("order_service addresses = %+v", a)
	}
}

const fullJSON = `{
 "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
 "static_resources": {
  "listeners": [{"name": "tcp", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
    "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
      "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": "t", "cluster": "a"}}]}]}],
  "clusters": [{"name": "a", "type": "STRICT_DNS", "lb_policy": "LEAST_REQUEST", "dns_refresh_rate": "2s",
    "circuit_breakers": {"thresholds": [{"max_requests": 10}]},
    "outlier_detection": {"consecutive_5xx": 3, "interval": "30s"},
    "load_assignment": {"endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "a.example", "port_value": 80}}}}]}]}}]
 }
}`

func TestParseJSONWithTCPProxy(t *testing.T) {
	bs, probs, err := Parse([]byte(fullJSON), Options{})
	if err != nil || len(probs) != 0 {
		t.Fatalf("parse: %v, problems %v", err, probs)
	}
	f := bs.StaticResources.Listeners[0].FilterChains[0].Filters[0]
	if f.TCPProxy == nil || f.TCPProxy.Cluster != "a" {
		t.Fatalf("tcp proxy = %+v", f.TCPProxy)
	}
	c := bs.StaticResources.Clusters[0]
	if c.DNSRefreshRate.Duration != 2*time.Second || *c.CircuitBreakers.Thresholds[0].MaxRequests != 10 || *c.OutlierDetection.Consecutive5xx != 3 {
		t.Fatalf("cluster = %+v", c)
	}
}

const unknownYAML = `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {prefix: "/", grpc: {}}
                route: {cluster: c}
          http_filters:
          - name: envoy.filters.http.cors
          - name: envoy.filters.http.router
  clusters:
  - name: c
    foo: 1
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}
          health_status: HEALTHY
`

func TestParseListsEachUnsupportedFieldWithItsPath(t *testing.T) {
	_, probs, err := Parse([]byte(unknownYAML), Options{})
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *UnsupportedError", err)
	}
	want := []string{
		"static_resources.clusters[0].foo",
		"static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].health_status",
		"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].match.grpc",
		"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.use_remote_address",
		"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]",
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w+":") {
			t.Errorf("error does not name %s:\n%v", w, err)
		}
	}
	if len(probs) != len(want) {
		t.Errorf("got %d problems, want %d: %v", len(probs), len(want), probs)
	}
}

func TestParseAllowUnsupportedWarns(t *testing.T) {
	bs, probs, err := Parse([]byte(unknownYAML), Options{AllowUnsupported: true})
	if err != nil {
		t.Fatal(err)
	}
	if bs == nil || len(probs) != 5 {
		t.Fatalf("bs=%v probs=%v", bs, probs)
	}
}

func TestParseInvalidValuesAreErrors(t *testing.T) {
	for name, in := range map[string]string{
		"bad type":        strings.Replace(fullJSON, `"STRICT_DNS"`, `"EDS"`, 1),
		"bad lb":          strings.Replace(fullJSON, `"LEAST_REQUEST"`, `"MAGLEV"`, 1),
		"missing cluster": strings.Replace(fullJSON, `"cluster": "a"`, `"cluster": "b"`, 1),
		"bad duration":    strings.Replace(fullJSON, `"2s"`, `"2m"`, 1),
		"bad type url":    strings.Replace(fullJSON, "tcp_proxy.v3.TcpProxy", "tcp_proxy.v2.TcpProxy", 1),
		"duplicate name":  strings.Replace(fullJSON, `"clusters": [`, `"clusters": [{"name": "a", "type": "STATIC"}, `, 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Parse([]byte(in), Options{})
			if err == nil {
				t.Fatal("want an error")
			}
			if name == "duplicate name" && !strings.Contains(err.Error(), `cluster "a" is defined twice`) {
				t.Errorf("error %v does not name the duplicate", err)
			}
		})
	}
}
