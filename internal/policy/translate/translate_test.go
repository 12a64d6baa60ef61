package translate

import (
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/internal/policy"
)

func mustTranslate(t *testing.T, doc string) Result {
	t.Helper()
	result, err := TranslateYAML([]byte(doc), Options{})
	if err != nil {
		t.Fatalf("TranslateYAML: %v", err)
	}
	return result
}

func unsupportedPaths(result Result) []string {
	var paths []string
	for _, u := range result.Unsupported {
		paths = append(paths, u.FieldPath)
	}
	return paths
}

const vsHeader = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  namespace: microservices
spec:
  hosts: [user-service]
`

const drHeader = `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: dr
  namespace: microservices
spec:
  host: user-service
`

const apHeader = `apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: ap
  namespace: microservices
spec:
`

const routeHeader = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: users
  namespace: microservices
spec:
  parentRefs:
  - {group: "", kind: Service, name: user-service, port: 80}
`

func TestTranslateRejectsInvalidValues(t *testing.T) {
	cases := []struct {
		name, doc, wantField, wantText string
	}{
		{"bad regex", vsHeader + `  http:
  - match: [{uri: {regex: "/api/(users"}}]
    route: [{destination: {host: a}}]
`, "spec.http[0].match[0].uri", "regular expression"},
		{"negative weight", vsHeader + `  http:
  - route:
    - {destination: {host: a}, weight: 90}
    - {destination: {host: b}, weight: -10}
`, "spec.http[0].route[1].weight", "negative weight"},
		{"weight sum 0", vsHeader + `  http:
  - route:
    - {destination: {host: a}, weight: 0}
    - {destination: {host: b}}
`, "spec.http[0].route", "sum to 0"},
		{"malformed timeout", vsHeader + `  http:
  - route: [{destination: {host: a}}]
    timeout: 10 seconds
`, "spec.http[0].timeout", "malformed duration"},
		{"negative per-try timeout", vsHeader + `  http:
  - route: [{destination: {host: a}}]
    retries: {attempts: 3, perTryTimeout: -1s}
`, "spec.http[0].retries.perTryTimeout", "negative"},
		{"unknown retry condition", vsHeader + `  http:
  - route: [{destination: {host: a}}]
    retries: {attempts: 3, retryOn: "5xx,sometimes"}
`, "spec.http[0].retries.retryOn", "unknown retry condition"},
		{"two string matches", vsHeader + `  http:
  - match: [{uri: {exact: /a, prefix: /a}}]
    route: [{destination: {host: a}}]
`, "spec.http[0].match[0].uri", "only one of"},
		{"relative uri", vsHeader + `  http:
  - match: [{uri: {prefix: api}}]
    route: [{destination: {host: a}}]
`, "spec.http[0].match[0].uri", "start with"},
		{"no action", vsHeader + `  http:
  - match: [{uri: {prefix: /api}}]
`, "spec.http[0]", "exactly one of route, redirect and directResponse"},
		{"route and redirect", vsHeader + `  http:
  - route: [{destination: {host: a}}]
    redirect: {uri: /x}
`, "spec.http[0]", "exactly one of"},
		{"star host bound to the mesh", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  http: [{route: [{destination: {host: a}}]}]
`, "spec.hosts[0]", "mesh"},
		{"invalid host", vsHeader + `  http: [{route: [{destination: {host: user_service}}]}]
`, "spec.http[0].route[0].destination.host", "character"},
		{"bad fault percentage", vsHeader + `  http:
  - route: [{destination: {host: a}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 150}}}
`, "spec.http[0].fault.abort.percentage.value", "percentage"},
		{"wrong type", vsHeader + `  http:
  - route: [{destination: {host: a}, weight: ten}]
`, "", "decode"},
		{"unknown load balancer", drHeader + `  trafficPolicy: {loadBalancer: {simple: FASTEST}}
`, "spec.trafficPolicy.loadBalancer.simple", "unknown load balancer"},
		{"malformed interval", drHeader + `  trafficPolicy: {outlierDetection: {interval: 30}}
`, "", "decode"},
		{"malformed interval string", drHeader + `  trafficPolicy: {outlierDetection: {interval: "thirty"}}
`, "spec.trafficPolicy.outlierDetection.interval", "malformed duration"},
		{"ejection percent over 100", drHeader + `  trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}
`, "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "percentage"},
		{"negative max connections", drHeader + `  trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}
`, "spec.trafficPolicy.connectionPool.tcp.maxConnections", "negative"},
		{"duplicate subset", drHeader + `  subsets: [{name: v1}, {name: v1}]
`, "spec.subsets[1].name", "twice"},
		{"subset policy checked too", drHeader + `  subsets: [{name: v1, trafficPolicy: {connectionPool: {http: {maxRetries: -3}}}}]
`, "spec.subsets[0].trafficPolicy.connectionPool.http.maxRetries", "negative"},
		{"unknown PeerAuthentication mode", `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: microservices}
spec: {mtls: {mode: strict}}
`, "spec.mtls.mode", "unknown mode"},
		{"portLevelMtls without selector", `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: microservices}
spec: {portLevelMtls: {"8080": {mode: DISABLE}}}
`, "spec.portLevelMtls", "selector"},
		{"portLevelMtls bad port", `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: p, namespace: microservices}
spec: {selector: {matchLabels: {app: a}}, portLevelMtls: {http: {mode: DISABLE}}}
`, "spec.portLevelMtls.http", "port number"},
		{"unknown action", apHeader + `  action: REJECT
`, "spec.action", "unknown action"},
		{"bad ipBlock", apHeader + `  rules: [{from: [{source: {ipBlocks: ["10.0.0.0/33"]}}]}]
`, "spec.rules[0].from[0].source.ipBlocks[0]", "CIDR"},
		{"bad port", apHeader + `  rules: [{to: [{operation: {ports: ["http"]}}]}]
`, "spec.rules[0].to[0].operation.ports[0]", "port number"},
		{"star in the middle", apHeader + `  rules: [{to: [{operation: {paths: ["/api/*/users"]}}]}]
`, "spec.rules[0].to[0].operation.paths[0]", "middle"},
		{"unknown condition key", apHeader + `  rules: [{when: [{key: request.colour, values: [red]}]}]
`, "spec.rules[0].when[0].key", "unknown condition key"},
		{"condition without values", apHeader + `  rules: [{when: [{key: source.ip}]}]
`, "spec.rules[0].when[0]", "neither values nor notValues"},
		{"empty source", apHeader + `  rules: [{from: [{}]}]
`, "spec.rules[0].from[0].source", "missing"},
		{"httproute bad regex", routeHeader + `  rules:
  - matches: [{path: {type: RegularExpression, value: "(("}}]
    backendRefs: [{name: a, port: 80}]
`, "spec.rules[0].matches[0].path.value", "regular expression"},
		{"httproute negative weight", routeHeader + `  rules:
  - backendRefs: [{name: a, port: 80, weight: -1}]
`, "spec.rules[0].backendRefs[0].weight", "negative"},
		{"httproute weight sum 0", routeHeader + `  rules:
  - backendRefs: [{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: 0}]
`, "spec.rules[0].backendRefs", "sum to 0"},
		{"httproute malformed duration", routeHeader + `  rules:
  - backendRefs: [{name: a, port: 80}]
    timeouts: {request: 1.5s}
`, "spec.rules[0].timeouts.request", "malformed duration"},
		{"httproute backend timeout longer than request", routeHeader + `  rules:
  - backendRefs: [{name: a, port: 80}]
    timeouts: {request: 1s, backendRequest: 2s}
`, "spec.rules[0].timeouts.backendRequest", "longer"},
		{"httproute backend without port", routeHeader + `  rules:
  - backendRefs: [{name: a}]
`, "spec.rules[0].backendRefs[0].port", "port"},
		{"httproute prefix rewrite on an exact match", routeHeader + `  rules:
  - matches: [{path: {type: Exact, value: /a}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]
    backendRefs: [{name: a, port: 80}]
`, "spec.rules[0].filters[0].urlRewrite.path", "PathPrefix"},
		{"httproute redirect with backends", routeHeader + `  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
    backendRefs: [{name: a, port: 80}]
`, "spec.rules[0]", "RequestRedirect"},
		{"httproute retry code", routeHeader + `  rules:
  - backendRefs: [{name: a, port: 80}]
    retry: {codes: [200]}
`, "spec.rules[0].retry.codes[0]", "4xx or 5xx"},
		{"duplicate key", `{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"}, "spec": {"hosts": ["a"], "hosts": ["b"]}}`, "", "duplicate"},
		{"no name", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {namespace: x}
spec: {}
`, "metadata.name", "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			result, err := TranslateYAML([]byte(c.doc), Options{})
			if err == nil {
				t.Fatalf("TranslateYAML accepted it; model %+v", result.Model)
			}
			var fieldErr *FieldError
			if !errors.As(err, &fieldErr) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fieldErr.FieldPath != c.wantField || !strings.Contains(err.Error(), c.wantText) {
				t.Errorf("error %q at %q, want %q at %q", err, fieldErr.FieldPath, c.wantText, c.wantField)
			}
			if fieldErr.Resource.Name == "" && c.wantField != "metadata.name" {
				t.Errorf("error %q does not name the resource", err)
			}
			m := result.Model
			if len(m.VirtualHosts)+len(m.Destinations)+len(m.PeerAuthentications)+len(m.AuthorizationPolicies)+len(m.Gateways) != 0 {
				t.Errorf("the invalid resource is in the model: %+v", m)
			}
		})
	}
}

func TestInvalidResourceDoesNotStopTheOthers(t *testing.T) {
	doc := vsHeader + `  http: [{route: [{destination: {host: a}, weight: -1}]}]
---
` + drHeader
	result, err := TranslateYAML([]byte(doc), Options{})
	if err == nil || !strings.Contains(err.Error(), "VirtualService microservices/vs: spec.http[0].route[0].weight") {
		t.Fatalf("error = %v, want one naming the VirtualService and field", err)
	}
	if len(result.Model.Destinations) != 1 || len(result.Model.VirtualHosts) != 0 {
		t.Errorf("model = %+v, want only the DestinationRule", result.Model)
	}
}

func TestTranslateReportsUnsupportedFields(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string
	}{
		{"mirror and cors", vsHeader + `  http:
  - route: [{destination: {host: a}}]
    mirror: {host: b}
    mirrorPercentage: {value: 10}
    corsPolicy: {allowOrigins: [{exact: "*"}]}
`, []string{"spec.http[0].mirror", "spec.http[0].mirrorPercentage", "spec.http[0].corsPolicy"}},
		{"typo is an unknown field", vsHeader + `  http:
  - route: [{destination: {host: a}}]
    timout: 5s
`, []string{"spec.http[0].timout"}},
		{"field names are case-sensitive", vsHeader + `  Http: []
`, []string{"spec.Http"}},
		{"tcp, tls and exportTo", vsHeader + `  exportTo: ["."]
  tcp: [{route: [{destination: {host: a}}]}]
  tls: [{match: [{sniHosts: [a]}], route: [{destination: {host: a}}]}]
`, []string{"spec.tls", "spec.tcp", "spec.exportTo"}},
		{"source-dependent match", vsHeader + `  http:
  - match: [{sourceLabels: {app: a}, uri: {prefix: /a}}, {uri: {prefix: /b}}]
    route: [{destination: {host: a}}]
`, []string{"spec.http[0].match[0].sourceLabels"}},
		{"pseudo-header names", vsHeader + `  http:
  - match: [{headers: {":authority": {exact: a}, authority: {exact: a}}}]
    route: [{destination: {host: a}}]
`, []string{"spec.http[0].match[0].headers.authority"}},
		{"destination rule extras", drHeader + `  exportTo: ["."]
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
    tls: {mode: SIMPLE, sni: a}
    connectionPool: {http: {h2UpgradePolicy: UPGRADE}, tcp: {tcpKeepalive: {time: 7200s}}}
    outlierDetection: {consecutiveLocalOriginFailures: 5}
    portLevelSettings: [{port: {number: 80}}]
`, []string{"spec.exportTo", "spec.trafficPolicy.portLevelSettings", "spec.trafficPolicy.loadBalancer.consistentHash", "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive",
			"spec.trafficPolicy.connectionPool.http.h2UpgradePolicy", "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
			"spec.trafficPolicy.tls.mode", "spec.trafficPolicy.tls.sni"}},
		{"ISTIO_MUTUAL is what lightmesh does", drHeader + `  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`, nil},
		{"gateway tls", `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: ["*"], tls: {mode: SIMPLE}}
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}
  - {port: {number: 8443, name: tls, protocol: TLS}, hosts: ["*"], tls: {mode: PASSTHROUGH}}
  - {port: {number: 9443, name: pass, protocol: HTTPS}, hosts: ["*"], tls: {mode: PASSTHROUGH}}
`, []string{"spec.servers[0].tls.credentialName", "spec.servers[2].port.protocol", "spec.servers[3].tls.mode"}},
		{"not a policy resource", `apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: control-plane}
`, []string{""}},
		{"httproute extras", routeHeader + `  - {name: gw, kind: Gateway, group: gateway.networking.k8s.io}
  hostnames: [users.example.com]
  rules:
  - filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: b, port: 80}}}
    backendRefs: [{name: a, port: 80, namespace: other}, {name: x, kind: ServiceImport, group: multicluster.x-k8s.io, port: 80}]
    sessionPersistence: {sessionName: s}
`, []string{"spec.parentRefs[1]", "spec.hostnames", "spec.rules[0].sessionPersistence", "spec.rules[0].filters[0]",
			"spec.rules[0].backendRefs[0].namespace", "spec.rules[0].backendRefs[1]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			result := mustTranslate(t, c.doc)
			got := unsupportedPaths(result)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("unsupported fields = %q, want %q\n%v", got, c.want, result.Unsupported)
			}
			for _, u := range result.Unsupported {
				if u.Reason == "" || u.Resource.Kind == "" || u.Resource.Name == "" {
					t.Errorf("incomplete report %+v", u)
				}
			}
		})
	}
}

func TestUnsupportedMatchIsLeftOutNotWidened(t *testing.T) {
	result := mustTranslate(t, vsHeader+`  http:
  - match: [{sourceLabels: {app: a}, uri: {prefix: /a}}, {uri: {prefix: /b}}]
    route: [{destination: {host: a}}]
`)
	routes := result.Model.VirtualHosts[0].Routes
	if len(routes) != 1 || routes[0].Match.Path.Value != "/b" {
		t.Fatalf("routes = %+v, want only the /b match", routes)
	}
}

func TestAuthorizationPolicyFailsClosed(t *testing.T) {
	cases := []struct {
		name      string
		doc       string
		wantRules []policy.Rule
		wantAct   policy.Action
		wantPaths []string
	}{
		{"ALLOW rule with requestPrincipals is left out", apHeader + `  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
  - to: [{operation: {methods: [GET]}}]
`, []policy.Rule{{To: []policy.Operation{{Methods: []string{"GET"}}}}}, policy.ActionAllow, []string{"spec.rules[0].from[0].source.requestPrincipals"}},
		{"DENY rule drops the field", apHeader + `  action: DENY
  rules:
  - from: [{source: {requestPrincipals: ["*"], namespaces: [dev]}}]
`, []policy.Rule{{From: []policy.Source{{Namespaces: []string{"dev"}}}}}, policy.ActionDeny, []string{"spec.rules[0].from[0].source.requestPrincipals"}},
		{"ALLOW with a JWT condition is left out", apHeader + `  rules:
  - when: [{key: "request.auth.claims[iss]", values: [x]}]
`, []policy.Rule{}, policy.ActionAllow, []string{"spec.rules[0].when[0]"}},
		{"DENY drops the JWT condition", apHeader + `  action: DENY
  rules:
  - when: [{key: "request.auth.claims[iss]", values: [x]}, {key: destination.port, values: ["8080"]}]
`, []policy.Rule{{When: []policy.Condition{{Key: policy.KeyDestinationPort, Ports: []uint32{8080}}}}}, policy.ActionDeny, []string{"spec.rules[0].when[0]"}},
		{"CUSTOM is enforced as DENY", apHeader + `  action: CUSTOM
  provider: {name: ext-authz}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
`, []policy.Rule{{To: []policy.Operation{{Paths: []string{"/admin*"}}}}}, policy.ActionDeny, []string{"spec.action", "spec.provider"}},
		{"ALLOW path template left out", apHeader + `  rules: [{to: [{operation: {paths: ["/api/{*}/x"]}}]}]
`, []policy.Rule{}, policy.ActionAllow, []string{"spec.rules[0].to[0].operation.paths"}},
		{"spec {} is an ALLOW policy without rules", apHeader + `  {}
`, []policy.Rule{}, policy.ActionAllow, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			result := mustTranslate(t, c.doc)
			if got := unsupportedPaths(result); !reflect.DeepEqual(got, c.wantPaths) {
				t.Errorf("unsupported = %q, want %q", got, c.wantPaths)
			}
			ap := result.Model.AuthorizationPolicies[0]
			if ap.Action != c.wantAct || !reflect.DeepEqual(ap.Rules, c.wantRules) {
				t.Errorf("policy = %s %+v, want %s %+v", ap.Action, ap.Rules, c.wantAct, c.wantRules)
			}
		})
	}
}

func TestAuthorizationPolicyFields(t *testing.T) {
	result := mustTranslate(t, apHeader+`  selector: {matchLabels: {app: user-service}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["spiffe://cluster.local/ns/a/sa/b", "cluster.local/ns/c/*"]
        notNamespaces: [dev]
        ipBlocks: ["10.0.0.0/8", "192.168.1.1", "::ffff:10.1.1.1"]
        notRemoteIpBlocks: ["10.9.0.0/16"]
    to:
    - operation: {methods: [GET], notPaths: ["/admin*"], ports: ["8080"], hosts: ["*.example.com"]}
    when:
    - {key: "request.headers[x-tenant]", values: [acme]}
    - {key: source.principal, notValues: ["spiffe://cluster.local/ns/x/sa/y"]}
    - {key: destination.ip, values: ["10.9.0.1"]}
`)
	got := result.Model.AuthorizationPolicies[0]
	text, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `action: ALLOW
name: ap
namespace: microservices
rules:
- from:
  - ipBlocks:
    - 10.0.0.0/8
    - 192.168.1.1/32
    - 10.1.1.1/32
    notNamespaces:
    - dev
    notRemoteIpBlocks:
    - 10.9.0.0/16
    principals:
    - cluster.local/ns/a/sa/b
    - cluster.local/ns/c/*
  to:
  - hosts:
    - '*.example.com'
    methods:
    - GET
    notPaths:
    - /admin*
    ports:
    - 8080
  when:
  - header: X-Tenant
    key: request.headers
    values:
    - acme
  - key: source.principal
    notValues:
    - cluster.local/ns/x/sa/y
  - ips:
    - 10.9.0.1/32
    key: destination.ip
selector:
  app: user-service
`
	if string(text) != want {
		t.Errorf("policy =\n%s\nwant\n%s", text, want)
	}
}

func TestHostsAndGatewayBinding(t *testing.T) {
	cases := []struct {
		name         string
		spec         string
		wantHosts    []string
		wantGateways []string
		wantDest     string
	}{
		{"no gateways binds to the mesh", `hosts: [user-service]
  http: [{route: [{destination: {host: user-service}}]}]`,
			[]string{"user-service.microservices.svc.cluster.local"}, []string{"mesh"}, "user-service.microservices.svc.cluster.local"},
		{"a listed gateway binds only there", `hosts: [api.example.com]
  gateways: [microservices-gateway]
  http: [{route: [{destination: {host: user-service.other.svc.cluster.local}}]}]`,
			[]string{"api.example.com"}, []string{"microservices/microservices-gateway"}, "user-service.other.svc.cluster.local"},
		{"mesh listed too", `hosts: [user-service, "*.example.com"]
  gateways: [istio-system/ingress, mesh, gw.edge.svc.cluster.local]
  http: [{route: [{destination: {host: User-Service}}]}]`,
			[]string{"user-service.microservices.svc.cluster.local", "*.example.com"}, []string{"istio-system/ingress", "mesh", "edge/gw"}, "user-service.microservices.svc.cluster.local"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			result := mustTranslate(t, `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: vs, namespace: microservices}
spec:
  `+c.spec+"\n")
			vh := result.Model.VirtualHosts[0]
			if !reflect.DeepEqual(vh.Hosts, c.wantHosts) || !reflect.DeepEqual(vh.Gateways, c.wantGateways) {
				t.Errorf("hosts %v gateways %v, want %v %v", vh.Hosts, vh.Gateways, c.wantHosts, c.wantGateways)
			}
			if got := vh.Routes[0].Destinations[0].Host; got != c.wantDest {
				t.Errorf("destination %q, want %q", got, c.wantDest)
			}
		})
	}
	custom, err := TranslateYAML([]byte(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec: {host: reviews}
`), Options{DomainSuffix: "corp.local", DefaultNamespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if got := custom.Model.Destinations[0].Host; got != "reviews.shop.svc.corp.local" {
		t.Errorf("host with options = %q, want reviews.shop.svc.corp.local", got)
	}
}

// TestVirtualServiceSemantics translates a VirtualService and evaluates requests against
// the model, as the proxy will.
func TestVirtualServiceSemantics(t *testing.T) {
	result := mustTranslate(t, vsHeader+`  http:
  - name: canary
    match:
    - headers: {x-canary: {exact: "true"}}
      uri: {prefix: /api/users}
    route: [{destination: {host: user-service, subset: v2}}]
  - name: users
    match: [{uri: {prefix: /api/users}, ignoreUriCase: true}]
    rewrite: {uri: /users}
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,503,reset"}
    route:
    - {destination: {host: user-service, subset: v1}, weight: 9}
    - {destination: {host: user-service, subset: v2}, weight: 1}
  - name: exact-never-reached
    match: [{uri: {exact: /api/users}}]
    route: [{destination: {host: other}}]
  - name: fault
    match: [{uri: {prefix: /flaky}}]
    fault: {delay: {fixedDelay: 5s, percentage: {value: 10}}, abort: {httpStatus: 503, percentage: {value: 5}}}
    route: [{destination: {host: flaky}}]
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: example.com}
  - name: teapot
    match: [{method: {exact: BREW}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - name: no-retries
    match: [{queryParams: {debug: {exact: "1"}}}]
    retries: {attempts: 0}
    route: [{destination: {host: debug}}]
`)
	routes := result.Model.VirtualHosts[0].Routes
	cases := []struct {
		req      policy.Request
		wantName string
	}{
		{policy.Request{Method: "GET", Path: "/api/users/1", Header: http.Header{"X-Canary": {"true"}}}, "canary"},
		{policy.Request{Method: "GET", Path: "/api/users/1"}, "users"},
		{policy.Request{Method: "GET", Path: "/api/usersX"}, "users"},
		{policy.Request{Method: "GET", Path: "/API/USERS"}, "users"},
		{policy.Request{Method: "GET", Path: "/api/users"}, "users"},
		{policy.Request{Method: "GET", Path: "/flaky/1"}, "fault"},
		{policy.Request{Method: "GET", Path: "/old"}, "moved"},
		{policy.Request{Method: "BREW", Path: "/pot"}, "teapot"},
		{policy.Request{Method: "GET", Path: "/x", RawQuery: "debug=1"}, "no-retries"},
		{policy.Request{Method: "GET", Path: "/nowhere"}, ""},
	}
	for _, c := range cases {
		got, ok := policy.SelectRoute(routes, &c.req)
		name := ""
		if ok {
			name = got.Name
		}
		if name != c.wantName {
			t.Errorf("%s %s?%s routed to %q, want %q", c.req.Method, c.req.Path, c.req.RawQuery, name, c.wantName)
		}
	}

	users := routes[1]
	if users.RewritePath("/api/users/42") != "/users/42" {
		t.Errorf("rewrite of /api/users/42 = %q", users.RewritePath("/api/users/42"))
	}
	wantRetries := &policy.RetryPolicy{Attempts: 3, PerTryTimeout: policy.Duration(500 * time.Millisecond),
		RetryOn: []string{"5xx", "reset", "retriable-status-codes"}, RetriableStatusCodes: []uint32{503}}
	if users.Timeout.D() != 2*time.Second || !reflect.DeepEqual(users.Retries, wantRetries) {
		t.Errorf("timeout %s retries %+v, want 2s %+v", users.Timeout, users.Retries, wantRetries)
	}
	if users.Destinations[0].Weight != 9 || users.Destinations[1].Subset != "v2" {
		t.Errorf("destinations %+v", users.Destinations)
	}
	fault := routes[3].Fault
	if fault.Delay.Delay.D() != 5*time.Second || fault.Delay.Percent != 10 || fault.Abort.Status != 503 || fault.Abort.Percent != 5 {
		t.Errorf("fault %+v %+v", fault.Delay, fault.Abort)
	}
	if rd := routes[4].Redirect; rd.StatusCode != http.StatusMovedPermanently || rd.Authority != "example.com" || routes[4].RedirectPath("/old") != "/new" {
		t.Errorf("redirect %+v", rd)
	}
	if dr := routes[5].DirectResponse; dr.Status != 418 || dr.Body != "short and stout" {
		t.Errorf("direct response %+v", dr)
	}
	if routes[6].Retries != nil {
		t.Errorf("attempts 0 left retries %+v", routes[6].Retries)
	}
}

func TestDestinationRuleSubsetsMergePolicies(t *testing.T) {
	result := mustTranslate(t, drHeader+`  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    connectionPool: {tcp: {maxConnections: 100, connectTimeout: 250ms}, http: {http2MaxRequests: 1000, maxRetries: 3, idleTimeout: 1m}}
    outlierDetection: {consecutiveGatewayErrors: 7, minHealthPercent: 30}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}, connectionPool: {tcp: {maxConnections: 5}}}
`)
	d := result.Model.Destinations[0]
	wantBase := policy.TrafficPolicy{
		LoadBalancer: policy.LoadBalancerLeastRequest,
		ConnectionPool: &policy.ConnectionPool{MaxConnections: 100, ConnectTimeout: policy.Duration(250 * time.Millisecond),
			HTTP2MaxRequests: 1000, MaxRetries: 3, IdleTimeout: policy.Duration(time.Minute)},
		OutlierDetection: &policy.OutlierDetection{Consecutive5xxErrors: 5, ConsecutiveGatewayErrors: 7,
			Interval: policy.Duration(10 * time.Second), BaseEjectionTime: policy.Duration(30 * time.Second), MaxEjectionPercent: 10, MinHealthPercent: 30},
	}
	if !reflect.DeepEqual(d.TrafficPolicy, wantBase) {
		t.Errorf("policy %+v, want %+v", d.TrafficPolicy, wantBase)
	}
	if !reflect.DeepEqual(d.Subsets[0].TrafficPolicy, wantBase) || !reflect.DeepEqual(d.Subsets[0].Labels, map[string]string{"version": "v1"}) {
		t.Errorf("subset v1 %+v, want the destination's policy", d.Subsets[0])
	}
	v2 := d.Subsets[1].TrafficPolicy
	if v2.LoadBalancer != policy.LoadBalancerRoundRobin || v2.ConnectionPool.MaxConnections != 5 || v2.ConnectionPool.HTTP2MaxRequests != 0 || !reflect.DeepEqual(v2.OutlierDetection, wantBase.OutlierDetection) {
		t.Errorf("subset v2 %+v: each part it sets replaces the destination's, the rest is inherited", v2)
	}
}

func TestPeerAuthenticationTranslation(t *testing.T) {
	result := mustTranslate(t, `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: lightmesh, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: users, namespace: microservices}
spec:
  selector: {matchLabels: {app: user-service}}
  portLevelMtls:
    "8080": {mode: PERMISSIVE}
    "9090": {}
`)
	pas := result.Model.PeerAuthentications
	if len(pas) != 2 || pas[0].Mode != policy.ModeStrict || !pas[0].CreationTimestamp.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("peer authentications %+v", pas)
	}
	if pas[1].Mode != policy.ModeUnset || !reflect.DeepEqual(pas[1].PortModes, map[uint32]policy.PeerAuthnMode{8080: policy.ModePermissive, 9090: policy.ModeUnset}) {
		t.Errorf("workload policy %+v", pas[1])
	}
	resolved := policy.ResolvePeerAuthentication(pas, []string{"lightmesh"}, "microservices", map[string]string{"app": "user-service"})
	for port, want := range map[uint32]policy.PeerAuthnMode{80: policy.ModeStrict, 8080: policy.ModePermissive, 9090: policy.ModeStrict} {
		if got := policy.MTLSMode(resolved, port); got != want {
			t.Errorf("port %d: %s, want %s", port, got, want)
		}
	}
}

func TestTranslateObjects(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   map[string]any{"name": "vs", "namespace": "microservices"},
		"spec": map[string]any{
			"hosts": []any{"user-service"},
			"http":  []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "user-service"}}}, "mirorr": map[string]any{}}},
		},
	}}
	result, err := TranslateObjects([]*unstructured.Unstructured{obj}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(result.Model.VirtualHosts) != 1 || result.Model.VirtualHosts[0].Hosts[0] != "user-service.microservices.svc.cluster.local" {
		t.Errorf("model %+v", result.Model)
	}
	if got := unsupportedPaths(result); !slices.Equal(got, []string{"spec.http[0].mirorr"}) {
		t.Errorf("unsupported %q, want the typo", got)
	}
}

func TestTranslateYAMLStreams(t *testing.T) {
	result := mustTranslate(t, `# comment only
---
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: a}
  spec: {host: a}
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: b, creationTimestamp: "2020-01-01T00:00:00Z"}
  spec: {host: b}
---
{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "c"}, "spec": {"host": "c"}}
`)
	var hosts []string
	for _, d := range result.Model.Destinations {
		hosts = append(hosts, d.Host)
	}
	// Oldest first: b has a timestamp, a and c have none (the zero time, sorted by name).
	want := []string{"a.default.svc.cluster.local", "c.default.svc.cluster.local", "b.default.svc.cluster.local"}
	if !reflect.DeepEqual(hosts, want) {
		t.Errorf("destinations %v, want %v", hosts, want)
	}
	if _, err := TranslateYAML([]byte("a: [1,\n"), Options{}); err == nil {
		t.Error("malformed YAML accepted")
	}
}
