package destination

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
)

const webFQDN = "web.shop.svc.cluster.local:80"

func webObjects() (*corev1.Service, *corev1.Pod, *corev1.Pod, *corev1.Pod) {
	return service("shop", "web", "10.96.0.5", servicePort("http", 80, intstr.FromString("http"))),
		pod("shop", "web-1", "web", "lightmesh"), pod("shop", "web-2", "web", "lightmesh"), pod("shop", "web-3", "web", "lightmesh")
}

func TestFullSetThenAddsAndRemoves(t *testing.T) {
	svc, p1, p2, p3 := webObjects()
	ports := map[string]int32{"http": 8080}
	e := newEnv(t, svc, p1, p2, p3, slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}, ep{ip: "10.1.0.2", pod: "web-2"}))
	s := e.subscribe(webFQDN)

	first := s.nextAdd()
	if got, want := addrs(first), []string{"10.1.0.1:8080", "10.1.0.2:8080"}; !slices.Equal(got, want) {
		t.Fatalf("first update: got %v, want the full set %v", got, want)
	}
	wa := first[0]
	if wa.GetTlsIdentity() != "spiffe://cluster.local/ns/shop/sa/web" || wa.GetProtocolHint() != destinationv1.ProtocolHint_PROTOCOL_HINT_HTTP2 {
		t.Errorf("meshed endpoint: identity %q hint %v", wa.GetTlsIdentity(), wa.GetProtocolHint())
	}
	wantLabels := map[string]string{LabelNamespace: "shop", LabelService: "web", LabelPod: "web-1", LabelOwnerKind: "Deployment",
		LabelOwnerName: "web", LabelZone: "zone-a", LabelServiceAccount: "web"}
	for k, v := range wantLabels {
		if wa.GetMetricLabels()[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, wa.GetMetricLabels()[k], v, wa.GetMetricLabels())
		}
	}

	e.update(slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}, ep{ip: "10.1.0.2", pod: "web-2"}, ep{ip: "10.1.0.3", pod: "web-3"}))
	if got := addrs(s.nextAdd()); !slices.Equal(got, []string{"10.1.0.3:8080"}) {
		t.Fatalf("scale up: got Add %v, want only the new endpoint", got)
	}
	e.update(slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.2", pod: "web-2"}, ep{ip: "10.1.0.3", pod: "web-3"}))
	if got := s.nextRemove(); !slices.Equal(got, []string{"10.1.0.1:8080"}) {
		t.Fatalf("scale down: got Remove %v", got)
	}
	e.update(slice("shop", "web", "web-x", ports))
	if got := s.nextRemove(); !slices.Equal(got, []string{"10.1.0.2:8080", "10.1.0.3:8080"}) {
		t.Fatalf("scale to zero: got Remove %v", got)
	}
	if ne := s.next().GetNoEndpoints(); ne == nil || !ne.GetExists() {
		t.Fatalf("scale to zero: want NoEndpoints{exists: true}, got %v", ne)
	}
}

func TestNotReadyTerminatingAndOtherControlPlane(t *testing.T) {
	svc, p1, p2, p3 := webObjects()
	other := pod("shop", "web-4", "web", "other-mesh")
	plain := pod("shop", "web-5", "web", "")
	opaque := pod("shop", "web-6", "web", "lightmesh")
	opaque.Annotations = map[string]string{"config.lightmesh.io/opaque-ports": "8000-8090"}
	e := newEnv(t, svc, p1, p2, p3, other, plain, opaque, slice("shop", "web", "web-x", map[string]int32{"http": 8080},
		ep{ip: "10.1.0.1", pod: "web-1"},
		ep{ip: "10.1.0.2", pod: "web-2", notReady: true},
		ep{ip: "10.1.0.3", pod: "web-3", terminat: true},
		ep{ip: "10.1.0.4", pod: "web-4"},
		ep{ip: "10.1.0.5", pod: "web-5"},
		ep{ip: "10.1.0.6", pod: "web-6"}))
	got := map[string]*destinationv1.WeightedAddr{}
	for _, wa := range e.subscribe(webFQDN).nextAdd() {
		got[addrKey(wa.GetAddr()).String()] = wa
	}
	if _, ok := got["10.1.0.2:8080"]; ok {
		t.Error("a not-ready endpoint was sent")
	}
	if _, ok := got["10.1.0.3:8080"]; ok {
		t.Error("a terminating endpoint was sent")
	}
	if len(got) != 4 {
		t.Fatalf("got %d endpoints, want 4: %v", len(got), got)
	}
	for addr, wantID := range map[string]string{"10.1.0.4:8080": "", "10.1.0.5:8080": "", "10.1.0.1:8080": "spiffe://cluster.local/ns/shop/sa/web"} {
		if id := got[addr].GetTlsIdentity(); id != wantID {
			t.Errorf("%s: identity %q, want %q (another control plane's or an unmeshed pod gets none)", addr, id, wantID)
		}
	}
	if h := got["10.1.0.6:8080"].GetProtocolHint(); h != destinationv1.ProtocolHint_PROTOCOL_HINT_OPAQUE {
		t.Errorf("opaque port: hint %v", h)
	}
	if h := got["10.1.0.5:8080"].GetProtocolHint(); h != destinationv1.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED {
		t.Errorf("unmeshed pod: hint %v", h)
	}
}

func TestMultiPortNamedTargetsAndClusterIP(t *testing.T) {
	svc := service("shop", "web", "10.96.0.5",
		servicePort("http", 80, intstr.FromString("web")), servicePort("admin", 9090, intstr.FromInt32(9091)))
	e := newEnv(t, svc, pod("shop", "web-1", "web", "lightmesh"),
		slice("shop", "web", "web-x", map[string]int32{"http": 8080, "admin": 9091}, ep{ip: "10.1.0.1", pod: "web-1"}))
	for path, want := range map[string]string{
		"web.shop.svc.cluster.local:9090": "10.1.0.1:9091",
		"web.shop:80":                     "10.1.0.1:8080",
		"10.96.0.5:80":                    "10.1.0.1:8080",
		"WEB.shop.svc.cluster.local.:80":  "10.1.0.1:8080",
	} {
		if got := addrs(e.subscribe(path).nextAdd()); !slices.Equal(got, []string{want}) {
			t.Errorf("%s: got %v, want %s", path, got, want)
		}
	}
}

// A TCP and a UDP port of one number are two ports (DNS): the proxy carries TCP, so the
// authority names the TCP one, whichever is listed first; a port only UDP serves is none.
func TestServicePortNumberSharedByTCPAndUDP(t *testing.T) {
	udp := func(p corev1.ServicePort) corev1.ServicePort { p.Protocol = corev1.ProtocolUDP; return p }
	svc := service("kube", "dns", "10.96.0.10",
		udp(servicePort("dns", 53, intstr.FromInt32(5353))), servicePort("dns-tcp", 53, intstr.FromInt32(5354)),
		udp(servicePort("stats", 9153, intstr.FromInt32(9153))))
	e := newEnv(t, svc, pod("kube", "dns-1", "dns", "lightmesh"),
		slice("kube", "dns", "dns-x", map[string]int32{"dns": 5353, "dns-tcp": 5354, "stats": 9153}, ep{ip: "10.1.0.1", pod: "dns-1"}))
	if got := addrs(e.subscribe("dns.kube.svc.cluster.local:53").nextAdd()); !slices.Equal(got, []string{"10.1.0.1:5354"}) {
		t.Errorf("port 53: got %v, want the TCP port's endpoint 10.1.0.1:5354", got)
	}
	ne := e.subscribe("10.96.0.10:9153").next().GetNoEndpoints()
	if ne == nil || ne.GetExists() || !strings.Contains(ne.GetNote(), "no TCP port 9153") {
		t.Errorf("a UDP-only port: got %v, want NoEndpoints{exists: false} saying it has no TCP port 9153", ne)
	}
}

// The protocol a Service port declares reaches the proxy with every endpoint: appProtocol
// first, else Istio's reading of the port name; a headless service without ports declares
// nothing.
func TestDeclaredProtocolOfTheServicePort(t *testing.T) {
	h2c := "kubernetes.io/h2c"
	withAppProtocol := servicePort("rpc", 81, intstr.FromInt32(8081))
	withAppProtocol.AppProtocol = &h2c
	svc := service("shop", "web", "10.96.0.5",
		servicePort("http-web", 80, intstr.FromInt32(8080)), withAppProtocol, servicePort("admin", 9090, intstr.FromInt32(9091)))
	e := newEnv(t, svc, pod("shop", "web-1", "web", "lightmesh"),
		slice("shop", "web", "web-x", map[string]int32{"http-web": 8080, "rpc": 8081, "admin": 9091}, ep{ip: "10.1.0.1", pod: "web-1"}))
	for path, want := range map[string]string{
		"web.shop.svc.cluster.local:80":   "http",
		"10.96.0.5:81":                    "kubernetes.io/h2c",
		"web.shop.svc.cluster.local:9090": "",
	} {
		add := e.subscribe(path).nextAdd()
		if len(add) != 1 || add[0].GetAppProtocol() != want {
			t.Errorf("%s: got %v, want one endpoint declaring %q", path, add, want)
		}
	}
}

func TestDeclaredProtocolFromPortNames(t *testing.T) {
	app := func(s string) *string { return &s }
	for _, tc := range []struct {
		name        string
		appProtocol *string
		want        string
	}{
		{"http", nil, "http"},
		{"HTTP-web", nil, "http"},
		{"http2", nil, "http2"},
		{"http2-api", nil, "http2"},
		{"grpc", nil, "grpc"},
		{"grpc-api", nil, "grpc"},
		{"grpc-web", nil, "grpc-web"},
		{"grpc-web-ui", nil, "grpc-web"},
		{"tcp-db", nil, "tcp"},
		{"httpx", nil, ""},
		{"web", nil, ""},
		{"", nil, ""},
		{"tcp", app("HTTP"), "http"},
		{"web", app(""), ""},
	} {
		p := corev1.ServicePort{Name: tc.name, AppProtocol: tc.appProtocol}
		if got := declaredProtocol(p); got != tc.want {
			t.Errorf("port %q appProtocol %v: %q, want %q", tc.name, tc.appProtocol, got, tc.want)
		}
	}
}

// A pod-IP authority declares the protocol of the Service ports that target the pod's port
// (Services of its namespace selecting it, ExternalName ones aside), none when they conflict.
func TestDeclaredProtocolOfAPodIP(t *testing.T) {
	selecting := func(name string, ports ...corev1.ServicePort) *corev1.Service {
		s := service("shop", name, "None", ports...)
		s.Spec.Selector = map[string]string{"app": "web"}
		return s
	}
	noTarget := func(name string, port int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: port}
	}
	h2c := servicePort("rpc", 80, intstr.FromInt32(8080))
	h2c.AppProtocol = new("kubernetes.io/h2c")
	other := selecting("api", servicePort("http", 80, intstr.FromInt32(8080)))
	other.Spec.Selector = map[string]string{"app": "api"}
	unselective := selecting("all", servicePort("http", 80, intstr.FromInt32(8080)))
	unselective.Spec.Selector = nil
	elsewhere := selecting("web", servicePort("http", 80, intstr.FromInt32(8080)))
	elsewhere.Namespace = "other"
	external := selecting("ext", servicePort("grpc", 80, intstr.FromInt32(8080)))
	external.Spec.Type, external.Spec.ExternalName = corev1.ServiceTypeExternalName, "web.example.com"
	udp := servicePort("udp", 8080, intstr.FromInt32(8080))
	udp.Protocol = corev1.ProtocolUDP
	for _, tc := range []struct {
		name     string
		port     int
		services []*corev1.Service
		want     string
	}{
		{"numeric targetPort", 8080, []*corev1.Service{selecting("web", servicePort("http", 80, intstr.FromInt32(8080)))}, "http"},
		{"numeric targetPort of another port", 8080, []*corev1.Service{selecting("web", servicePort("http", 80, intstr.FromInt32(8081)))}, ""},
		{"named targetPort", 8080, []*corev1.Service{selecting("web", servicePort("grpc", 80, intstr.FromString("web")))}, "grpc"},
		{"named targetPort of another port", 8080, []*corev1.Service{selecting("web", servicePort("grpc", 80, intstr.FromString("metrics")))}, ""},
		{"named targetPort of a sidecar", 9100, []*corev1.Service{selecting("web", servicePort("http-metrics", 80, intstr.FromString("exporter")))}, "http"},
		{"named targetPort of an init container", 7000, []*corev1.Service{selecting("web", servicePort("http", 80, intstr.FromString("setup")))}, ""},
		{"no targetPort", 8080, []*corev1.Service{selecting("web", noTarget("http2", 8080))}, "http2"},
		{"no targetPort, another port", 8080, []*corev1.Service{selecting("web", noTarget("http2", 80))}, ""},
		{"appProtocol", 8080, []*corev1.Service{selecting("web", h2c)}, "kubernetes.io/h2c"},
		{"not selecting the pod", 8080, []*corev1.Service{other}, ""},
		{"empty selector", 8080, []*corev1.Service{unselective}, ""},
		{"another namespace", 8080, []*corev1.Service{elsewhere}, ""},
		{"conflicting services", 8080, []*corev1.Service{
			selecting("web", servicePort("http", 80, intstr.FromInt32(8080))),
			selecting("web-grpc", servicePort("grpc", 81, intstr.FromString("web"))),
		}, ""},
		{"conflicting ports of a service", 8080, []*corev1.Service{
			selecting("web", servicePort("http", 80, intstr.FromInt32(8080)), servicePort("tcp", 81, intstr.FromInt32(8080))),
		}, ""},
		{"two services agreeing", 8080, []*corev1.Service{
			selecting("web", servicePort("http", 80, intstr.FromInt32(8080))),
			selecting("web-2", servicePort("http-alt", 81, intstr.FromString("web"))),
		}, "http"},
		{"one declaring, one not", 8080, []*corev1.Service{
			selecting("web", servicePort("web", 80, intstr.FromInt32(8080))),
			selecting("web-http", servicePort("http", 81, intstr.FromInt32(8080))),
		}, "http"},
		{"ExternalName ignored", 8080, []*corev1.Service{external, selecting("web", servicePort("http", 80, intstr.FromInt32(8080)))}, "http"},
		{"UDP port ignored", 8080, []*corev1.Service{selecting("web", udp, servicePort("http", 80, intstr.FromInt32(8080)))}, "http"},
		{"skipped inbound port", 9000, []*corev1.Service{selecting("web", servicePort("http", 80, intstr.FromInt32(9000)))}, ""},
		{"proxy admin port", 4191, []*corev1.Service{selecting("web", servicePort("http", 80, intstr.FromInt32(4191)))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("shop", "web-0", "web", "lightmesh")
			p.Labels["app"] = "web"
			p.Annotations = map[string]string{"config.lightmesh.io/skip-inbound-ports": "9000"}
			p.Status.PodIP, p.Status.PodIPs = "10.1.0.9", []corev1.PodIP{{IP: "10.1.0.9"}}
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 8081}}
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "exporter",
				RestartPolicy: new(corev1.ContainerRestartPolicyAlways), Ports: []corev1.ContainerPort{{Name: "exporter", ContainerPort: 9100}}},
				corev1.Container{Name: "setup", Ports: []corev1.ContainerPort{{Name: "setup", ContainerPort: 7000}}})
			objs := []runtime.Object{p}
			for _, s := range tc.services {
				objs = append(objs, s)
			}
			e := newEnv(t, objs...)
			add := e.subscribe(fmt.Sprintf("10.1.0.9:%d", tc.port)).nextAdd()
			if len(add) != 1 || add[0].GetAppProtocol() != tc.want {
				t.Errorf("got %v, want one endpoint declaring %q", add, tc.want)
			}
		})
	}
}

func TestHeadlessWithoutPorts(t *testing.T) {
	svc := service("shop", "db", corev1.ClusterIPNone)
	e := newEnv(t, svc, pod("shop", "db-0", "db", "lightmesh"),
		slice("shop", "db", "db-x", nil, ep{ip: "10.1.0.7", pod: "db-0"}))
	if got := addrs(e.subscribe("db.shop.svc.cluster.local:5432").nextAdd()); !slices.Equal(got, []string{"10.1.0.7:5432"}) {
		t.Fatalf("headless: got %v", got)
	}
}

func TestUnknownExternalNameAndBadAuthority(t *testing.T) {
	ext := service("shop", "api", "")
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "api.example.com"
	svc, _, _, _ := webObjects()
	e := newEnv(t, ext, svc)
	for path, exists := range map[string]bool{
		"nope.shop.svc.cluster.local:80": false, "example.com:443": false, "10.9.9.9:80": false,
		"web.shop.svc.cluster.local:81": false, "api.shop.svc.cluster.local:443": true, webFQDN: true,
	} {
		ne := e.subscribe(path).next().GetNoEndpoints()
		if ne == nil || ne.GetExists() != exists {
			t.Errorf("%s: got %v, want NoEndpoints{exists: %v}", path, ne, exists)
		}
		if path == "api.shop.svc.cluster.local:443" && ne.GetNote() == "" {
			t.Errorf("ExternalName: no note")
		}
	}
	if err := e.service.Subscribe(e.ctx, "no-port", func(*destinationv1.Update) error { return nil }); err == nil {
		t.Error("an authority without a port was accepted")
	}
}

// A subscriber whose send never returns must not delay another subscriber.
func TestStuckSubscriberDoesNotDelayOthers(t *testing.T) {
	svc, p1, p2, p3 := webObjects()
	ports := map[string]int32{"http": 8080}
	e := newEnv(t, svc, p1, p2, p3, slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}))

	stuckCtx, unstick := context.WithCancel(e.ctx)
	defer unstick()
	entered := make(chan struct{}, 1)
	go func() {
		_ = e.service.Subscribe(stuckCtx, webFQDN, func(*destinationv1.Update) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-stuckCtx.Done() // never reads: blocks like a full gRPC flow-control window
			return stuckCtx.Err()
		})
	}()
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("the stuck subscriber never got its first update")
	}

	s := e.subscribe(webFQDN)
	s.nextAdd()
	start := time.Now()
	var eps []ep
	for i := 2; i <= 40; i++ {
		eps = append(eps, ep{ip: fmt.Sprintf("10.1.0.%d", i), pod: "web-2"})
		e.update(slice("shop", "web", "web-x", ports, append([]ep{{ip: "10.1.0.1", pod: "web-1"}}, eps...)...))
	}
	seen := map[string]bool{}
	for len(seen) < 39 {
		for _, a := range addrs(s.nextAdd()) {
			seen[a] = true
		}
	}
	if d := time.Since(start); d > waitFor {
		t.Fatalf("the live subscriber took %s", d)
	}
}

func TestDiffReplacesChangedEndpoints(t *testing.T) {
	a := &destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: "10.0.0.1", Port: 80}, Weight: 1}
	b := &destinationv1.WeightedAddr{Addr: &destinationv1.TcpAddress{Ip: "10.0.0.1", Port: 80}, Weight: 1, TlsIdentity: "spiffe://cluster.local/ns/a/sa/b"}
	k := addrKey(a.Addr)
	last := &state{exists: true, endpoints: map[netip.AddrPort]*destinationv1.WeightedAddr{k: a}}
	cur := &state{exists: true, endpoints: map[netip.AddrPort]*destinationv1.WeightedAddr{k: b}}
	u := diff(last, cur)
	if len(u) != 1 || u[0].GetAdd() == nil || u[0].GetAdd().GetAddrs()[0].GetTlsIdentity() == "" {
		t.Fatalf("a changed endpoint must be re-added: %v", u)
	}
	if u := diff(cur, cur); len(u) != 0 {
		t.Fatalf("no change must send nothing: %v", u)
	}
}

// TestServicePortTheProxyDoesNotTake: a Service whose port targets a port the pod's proxy
// leaves alone (skip-inbound-ports) gives endpoints without identity or protocol hint, as
// the pod's IP does: proxy-init does not redirect that port, so mTLS would reach the
// application itself.
func TestServicePortTheProxyDoesNotTake(t *testing.T) {
	svc := service("shop", "web", "10.96.0.5", servicePort("http", 80, intstr.FromInt32(8080)), servicePort("metrics", 9000, intstr.FromInt32(9000)))
	p1 := pod("shop", "web-1", "web", "lightmesh")
	p1.Annotations = map[string]string{"config.lightmesh.io/skip-inbound-ports": "9000"}
	ports := map[string]int32{"http": 8080, "metrics": 9000}
	e := newEnv(t, svc, p1, slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}))
	for _, tc := range []struct {
		path     string
		identity string
		hint     destinationv1.ProtocolHint
	}{
		{webFQDN, "spiffe://cluster.local/ns/shop/sa/web", destinationv1.ProtocolHint_PROTOCOL_HINT_HTTP2},
		{"web.shop.svc.cluster.local:9000", "", destinationv1.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED},
	} {
		got := e.subscribe(tc.path).nextAdd()
		if len(got) != 1 || got[0].GetTlsIdentity() != tc.identity || got[0].GetProtocolHint() != tc.hint {
			t.Errorf("%s: got %v, want identity %q and hint %v", tc.path, got, tc.identity, tc.hint)
		}
	}
}
