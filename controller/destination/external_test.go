package destination

import (
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// An ExternalName service's name is resolved (A and AAAA) against the configured DNS
// servers, again at the answer's TTL clamped to [5s, 60s]; a failure keeps the last answer.
func TestExternalNameResolved(t *testing.T) {
	dnsSrv := newDNSServer(t)
	dnsSrv.set(t, "api.example.com", "api.example.com. 1 IN A 192.0.2.10", "api.example.com. 300 IN AAAA 2001:db8::1")
	after := newFakeAfter()
	ext := service("shop", "api", "")
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "API.example.com."
	e := newEnvWith(t, Options{DNSServers: []string{dnsSrv.addr}, After: after.after}, ext)
	s := e.subscribe("api.shop.svc.cluster.local:443")

	u := s.next()
	if ne := u.GetNoEndpoints(); ne != nil {
		if !ne.GetExists() {
			t.Fatalf("before the answer: %v", u)
		}
		u = s.next()
	}
	if u.GetAdd() == nil {
		t.Fatalf("got %v, want an Add", u)
	}
	if got := addrs(u.GetAdd().GetAddrs()); !slices.Equal(got, []string{"192.0.2.10:443", "[2001:db8::1]:443"}) {
		t.Fatalf("resolved: got %v", got)
	}
	for _, wa := range u.GetAdd().GetAddrs() {
		if wa.GetTlsIdentity() != "" || wa.GetProtocolHint() != 0 {
			t.Errorf("an external endpoint has identity %q, hint %v", wa.GetTlsIdentity(), wa.GetProtocolHint())
		}
	}
	w := after.next(t)
	if w.d != MinExternalNameTTL {
		t.Errorf("TTL 1s: re-resolution after %s, want %s", w.d, MinExternalNameTTL)
	}

	// The answer changes: the next resolution sends the difference.
	dnsSrv.set(t, "api.example.com", "api.example.com. 3600 IN A 192.0.2.11")
	w.fire <- time.Now()
	if got := s.nextRemove(); !slices.Equal(got, []string{"192.0.2.10:443", "[2001:db8::1]:443"}) {
		t.Fatalf("removed %v", got)
	}
	if got := addrs(s.nextAdd()); !slices.Equal(got, []string{"192.0.2.11:443"}) {
		t.Fatalf("added %v", got)
	}
	if w = after.next(t); w.d != MaxExternalNameTTL {
		t.Errorf("TTL 3600s: re-resolution after %s, want %s", w.d, MaxExternalNameTTL)
	}

	// A failing server: the last good answer is kept, asked again soon.
	dnsSrv.fail(true)
	w.fire <- time.Now()
	if w = after.next(t); w.d != MinExternalNameTTL {
		t.Errorf("after a failure: re-resolution after %s, want %s", w.d, MinExternalNameTTL)
	}
	select {
	case u := <-s.updates:
		t.Fatalf("a failed resolution changed the endpoints: %v", u)
	default:
	}
	// A second subscriber gets the kept answer at once.
	if got := addrs(e.subscribe("api.shop:443").nextAdd()); !slices.Equal(got, []string{"192.0.2.11:443"}) {
		t.Fatalf("second subscriber: got %v", got)
	}
}

// A pod-IP authority that is not a ClusterIP is the pod itself: one endpoint, with the pod's
// identity and labels when this control plane meshes it.
func TestPodIPAuthority(t *testing.T) {
	meshed := pod("shop", "web-1", "web", "lightmesh")
	meshed.Labels["version"] = "v2"
	meshed.Annotations = map[string]string{"config.lightmesh.io/skip-inbound-ports": "9000-9001"}
	meshed.Status.PodIP = "10.1.0.9"
	meshed.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.9"}}
	plain := pod("shop", "legacy", "legacy", "")
	plain.Status.PodIP = "10.1.0.10"
	host := pod("shop", "node-agent", "agent", "lightmesh")
	host.Spec.HostNetwork = true
	host.Status.PodIP = "10.0.0.1"
	svc := service("shop", "web", "10.96.0.5", servicePort("http", 80, intstr.FromInt32(8080)))
	e := newEnv(t, svc, meshed, plain, host)

	got := e.subscribe("10.1.0.9:8080").nextAdd()
	if len(got) != 1 || addrKey(got[0].GetAddr()).String() != "10.1.0.9:8080" {
		t.Fatalf("meshed pod: %v", got)
	}
	if got[0].GetTlsIdentity() != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Errorf("meshed pod identity %q", got[0].GetTlsIdentity())
	}
	if !maps.Equal(got[0].GetLabels(), meshed.Labels) {
		t.Errorf("labels %v, want %v", got[0].GetLabels(), meshed.Labels)
	}
	if got[0].GetMetricLabels()[LabelPod] != "web-1" {
		t.Errorf("metric labels %v", got[0].GetMetricLabels())
	}
	// The proxy's own ports (admin, tap, inbound) and skipped inbound ports are reached in
	// plain text: proxy-init does not redirect them.
	for _, path := range []string{"10.1.0.9:4191", "10.1.0.9:4190", "10.1.0.9:4143", "10.1.0.9:9000"} {
		if got := e.subscribe(path).nextAdd(); len(got) != 1 || got[0].GetTlsIdentity() != "" {
			t.Errorf("%s is not intercepted by the pod's proxy, yet: %v", path, got)
		}
	}
	got = e.subscribe("10.1.0.10:80").nextAdd()
	if len(got) != 1 || got[0].GetTlsIdentity() != "" {
		t.Errorf("unmeshed pod: %v", got)
	}
	for _, path := range []string{"10.0.0.1:9100", "10.1.0.99:80"} {
		if ne := e.subscribe(path).next().GetNoEndpoints(); ne == nil || ne.GetExists() {
			t.Errorf("%s: got %v, want unknown", path, ne)
		}
	}
}
