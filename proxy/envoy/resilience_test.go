package envoy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lineOf is the 1-based line of the first line of text that contains marker.
func lineOf(t *testing.T, text, marker string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not in the config", marker)
	return 0
}

// resilienceYAML has every new cluster and route field; CA is replaced by a file name.
const resilienceYAML = `static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route:
                  cluster: c
                  retry_policy:
                    retry_on: "5xx,retriable-status-codes"
                    num_retries: 3
                    retriable_status_codes: [418, 429]
                    retry_back_off: {base_interval: 0.1s, max_interval: 0.5s}
          http_filters:
          - name: envoy.filters.http.router
  clusters:
  - name: c
    type: STATIC
    outlier_detection:
      consecutive_5xx: 3
      consecutive_gateway_failure: 2
      enforcing_consecutive_5xx: 100
      enforcing_consecutive_gateway_failure: 100
      interval: 1s
      base_ejection_time: 5s
      max_ejection_percent: 50
      enforcing_success_rate: 0
    common_lb_config: {healthy_panic_threshold: {value: 25}}
    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        max_connections: 2
        max_pending_requests: 3
        max_requests: 4
        max_retries: 5
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: backend.test
        common_tls_context:
          tls_certificates:
          - certificate_chain: {inline_string: "CHAIN"}
            private_key: {filename: CA}
          validation_context:
            trusted_ca: {filename: CA}
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: {exact: backend.test}
            - san_type: URI
              matcher: {exact: "spiffe://cluster.local/ns/a/sa/b"}
          alpn_protocols: ["http/1.1"]
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}
`

func resilienceConfig(t *testing.T) string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(resilienceYAML, "{filename: CA}", "{filename: "+ca+"}")
}

func TestParseOutlierBreakersTLSAndBackOff(t *testing.T) {
	bs, probs, err := Parse([]byte(resilienceConfig(t)), Options{})
	if err != nil || len(probs) != 0 {
		t.Fatalf("parse: %v, problems %v", err, probs)
	}
	c := bs.StaticResources.Clusters[0]
	od := c.OutlierDetection
	if *od.Consecutive5xx != 3 || *od.ConsecutiveGatewayFailure != 2 || *od.EnforcingConsecutiveGatewayFailure != 100 ||
		od.Interval.Duration != time.Second || od.BaseEjectionTime.Duration != 5*time.Second || *od.MaxEjectionPercent != 50 {
		t.Errorf("outlier_detection = %+v", od)
	}
	if c.CommonLbConfig.HealthyPanicThreshold.Value != 25 {
		t.Errorf("healthy_panic_threshold = %+v", c.CommonLbConfig.HealthyPanicThreshold)
	}
	th := c.CircuitBreakers.Thresholds[0]
	if *th.MaxConnections != 2 || *th.MaxPendingRequests != 3 || *th.MaxRequests != 4 || *th.MaxRetries != 5 {
		t.Errorf("thresholds = %+v", th)
	}
	tc := c.TransportSocket.TLS
	if tc == nil || tc.SNI != "backend.test" {
		t.Fatalf("tls = %+v", c.TransportSocket)
	}
	ctx := tc.CommonTLSContext
	if chain, _ := ctx.TLSCertificates[0].CertificateChain.Read(); string(chain) != "CHAIN" {
		t.Errorf("inline certificate chain = %q", chain)
	}
	if ca, err := ctx.ValidationContext.TrustedCA.Read(); err != nil || string(ca) != "PEM" {
		t.Errorf("trusted_ca file = %q, %v", ca, err)
	}
	if m := ctx.ValidationContext.MatchTypedSubjectAltNames; len(m) != 2 || m[1].SanType != "URI" || *m[1].Matcher.Exact != "spiffe://cluster.local/ns/a/sa/b" {
		t.Errorf("san matchers = %+v", m)
	}
	if len(ctx.AlpnProtocols) != 1 || ctx.AlpnProtocols[0] != "http/1.1" {
		t.Errorf("alpn = %v", ctx.AlpnProtocols)
	}
	rp := bs.StaticResources.Listeners[0].FilterChains[0].Filters[0].HCM.RouteConfig.VirtualHosts[0].Routes[0].Route.RetryPolicy
	if rp.RetryBackOff.BaseInterval.Duration != 100*time.Millisecond || rp.RetryBackOff.MaxInterval.Duration != 500*time.Millisecond ||
		len(rp.RetriableStatusCodes) != 2 || rp.RetriableStatusCodes[1] != 429 {
		t.Errorf("retry policy = %+v", rp)
	}
}

func TestParseReportsWhatIsNotEnforcedWithLines(t *testing.T) {
	in := resilienceConfig(t)
	for _, r := range [][2]string{
		{"enforcing_success_rate: 0", "success_rate_minimum_hosts: 5"},
		{"enforcing_consecutive_5xx: 100", "enforcing_consecutive_5xx: 50"},
		{"priority: DEFAULT", "priority: HIGH"},
		{`alpn_protocols: ["http/1.1"]`, `alpn_protocols: ["h2"]`},
		{"san_type: DNS", "san_type: EMAIL"},
		{"matcher: {exact: backend.test}", "matcher: {prefix: backend}"},
		{`retry_on: "5xx,retriable-status-codes"`, `retry_on: "5xx,refused-stream"`},
		{"interval: 1s", "interval: 1s\n      max_ejection_time: 60s"},
	} {
		in = strings.Replace(in, r[0], r[1], 1)
	}
	_, _, err := Parse([]byte(in), Options{})
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *UnsupportedError", err)
	}
	const cl = "static_resources.clusters[0]."
	const ctx = cl + "transport_socket.typed_config.common_tls_context."
	want := map[string]string{
		cl + "outlier_detection.success_rate_minimum_hosts":                  "success_rate_minimum_hosts: 5",
		cl + "outlier_detection.enforcing_consecutive_5xx":                   "enforcing_consecutive_5xx: 50",
		cl + "outlier_detection.max_ejection_time":                           "max_ejection_time: 60s",
		cl + "circuit_breakers.thresholds[0].priority":                       "priority: HIGH",
		ctx + "alpn_protocols[0]":                                            "alpn_protocols",
		ctx + "validation_context.match_typed_subject_alt_names[0].san_type": "san_type: EMAIL",
		ctx + "validation_context.match_typed_subject_alt_names[0].matcher":  "matcher: {prefix",
		"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.retry_policy.retry_on": "retry_on:",
	}
	got := map[string]Problem{}
	for _, p := range ue.Problems {
		got[p.Path] = p
	}
	for path, marker := range want {
		p, ok := got[path]
		if !ok {
			t.Errorf("%s is not reported:\n%v", path, err)
			continue
		}
		if l := lineOf(t, in, marker); p.Line != l {
			t.Errorf("%s: line %d, want %d", path, p.Line, l)
		}
		if !strings.Contains(err.Error(), "line "+strconv.Itoa(p.Line)+": "+path+": ") {
			t.Errorf("the error does not name %s with its line:\n%v", path, err)
		}
	}
	if len(ue.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ue.Problems), len(want), err)
	}
	if _, probs, err := Parse([]byte(in), Options{AllowUnsupported: true}); err != nil || len(probs) != len(want) {
		t.Errorf("--allow-unsupported: %v, %d warnings", err, len(probs))
	}
}

func TestParseInvalidValuesNameFieldAndLine(t *testing.T) {
	const cl = "static_resources.clusters[0]."
	const ctx = cl + "transport_socket.typed_config.common_tls_context."
	const rp = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.retry_policy."
	for _, tc := range []struct {
		name, old, new, path, marker string
	}{
		{"duration in milliseconds", "base_ejection_time: 5s", "base_ejection_time: 5ms", cl + "outlier_detection.base_ejection_time", "base_ejection_time"},
		{"duration in minutes", "interval: 1s", "interval: 1m", cl + "outlier_detection.interval", "interval: 1m"},
		{"percent over 100", "max_ejection_percent: 50", "max_ejection_percent: 150", cl + "outlier_detection.max_ejection_percent", "max_ejection_percent"},
		{"enforcing over 100", "enforcing_consecutive_gateway_failure: 100", "enforcing_consecutive_gateway_failure: 101", cl + "outlier_detection.enforcing_consecutive_gateway_failure", "enforcing_consecutive_gateway_failure"},
		{"string for a number", "consecutive_5xx: 3", "consecutive_5xx: three", cl + "outlier_detection.consecutive_5xx", "consecutive_5xx: three"},
		{"negative number", "max_connections: 2", "max_connections: -2", cl + "circuit_breakers.thresholds[0].max_connections", "max_connections"},
		{"unknown priority", "priority: DEFAULT", "priority: LOW", cl + "circuit_breakers.thresholds[0].priority", "priority"},
		{"back-off without base", "retry_back_off: {base_interval: 0.1s, max_interval: 0.5s}", "retry_back_off: {max_interval: 0.5s}", rp + "retry_back_off.base_interval", "retry_back_off"},
		{"max below base", "max_interval: 0.5s", "max_interval: 0.05s", rp + "retry_back_off.max_interval", "retry_back_off"},
		{"not a status code", "[418, 429]", "[418, 700]", rp + "retriable_status_codes[1]", "retriable_status_codes"},
		{"missing CA file", "trusted_ca: {filename: ", "trusted_ca: {filename: /nonexistent/ca.pem} #", ctx + "validation_context.trusted_ca.filename", "trusted_ca"},
		{"SANs without CA", "            trusted_ca: {filename: ", "            #", ctx + "validation_context.match_typed_subject_alt_names", "match_typed_subject_alt_names"},
		{"two data sources", `{inline_string: "CHAIN"}`, `{inline_string: "CHAIN", filename: /x}`, ctx + "tls_certificates[0].certificate_chain", "certificate_chain"},
		{"wrong tls type", "tls.v3.UpstreamTlsContext", "tls.v3.DownstreamTlsContext", cl + "transport_socket.typed_config.@type", "DownstreamTlsContext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := resilienceConfig(t)
			if !strings.Contains(base, tc.old) {
				t.Fatalf("%q is not in the config", tc.old)
			}
			in := strings.Replace(base, tc.old, tc.new, 1)
			_, _, err := Parse([]byte(in), Options{AllowUnsupported: true})
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want *InvalidError", err)
			}
			line := lineOf(t, in, tc.marker)
			want := "line " + strconv.Itoa(line) + ": " + tc.path + ": "
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("the error does not contain %q:\n%v", want, err)
			}
		})
	}
}

// One run names every problem: invalid values and unsupported fields together.
func TestParseInvalidErrorAlsoListsUnsupportedFields(t *testing.T) {
	in := strings.Replace(resilienceConfig(t), "interval: 1s", "interval: 1m\n      colour: blue", 1)
	_, _, err := Parse([]byte(in), Options{})
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want *InvalidError", err)
	}
	for _, want := range []string{
		"line " + strconv.Itoa(lineOf(t, in, "interval: 1m")) + ": static_resources.clusters[0].outlier_detection.interval: ",
		"line " + strconv.Itoa(lineOf(t, in, "colour")) + ": static_resources.clusters[0].outlier_detection.colour: unknown or unsupported field",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not contain %q:\n%v", want, err)
		}
	}
}
