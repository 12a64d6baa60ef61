package destination

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The streams of one authority share one computed state: one snapshot per change, the
// same endpoint messages in every stream.
func TestStreamsOfAnAuthorityShareOneState(t *testing.T) {
	svc, p1, p2, p3 := webObjects()
	ports := map[string]int32{"http": 8080}
	e := newEnv(t, svc, p1, p2, p3, slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}))
	a, b := e.subscribe(webFQDN), e.subscribe("web.shop:80")
	first, second := a.nextAdd(), b.nextAdd()
	if len(first) != 1 || first[0] != second[0] {
		t.Fatalf("two streams of one authority got different endpoint messages: %v, %v", first, second)
	}
	if n := e.watchCount(); n != 1 {
		t.Fatalf("%d watches for one authority, want 1", n)
	}
	e.update(slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}, ep{ip: "10.1.0.2", pod: "web-2"}))
	if x, y := a.nextAdd(), b.nextAdd(); len(x) != 1 || x[0] != y[0] {
		t.Fatalf("after a change: %v, %v", x, y)
	}
}

// A change of one Service recomputes the state of that Service only, not of the others of
// its namespace nor of cluster-IP authorities of other Services.
func TestChangeWakesOnlyItsService(t *testing.T) {
	web, p1, p2, _ := webObjects()
	api := service("shop", "api", "10.96.0.6", servicePort("http", 80, intstr.FromString("http")))
	apiPod := pod("shop", "api-1", "api", "lightmesh")
	ports := map[string]int32{"http": 8080}
	e := newEnv(t, web, api, p1, p2, apiPod,
		slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}),
		slice("shop", "api", "api-x", ports, ep{ip: "10.1.1.1", pod: "api-1"}))
	webStream, apiStream, apiByIP := e.subscribe(webFQDN), e.subscribe("api.shop:80"), e.subscribe("10.96.0.6:80")
	webStream.nextAdd()
	apiStream.nextAdd()
	apiByIP.nextAdd()
	apiState, apiIPState := e.state("api.shop:80"), e.state("10.96.0.6:80")

	e.update(slice("shop", "web", "web-x", ports, ep{ip: "10.1.0.1", pod: "web-1"}, ep{ip: "10.1.0.2", pod: "web-2"}))
	if got := addrs(webStream.nextAdd()); !slices.Equal(got, []string{"10.1.0.2:8080"}) {
		t.Fatalf("web: %v", got)
	}
	// Had the event woken api's watches, they would have been queued with web's: wait until
	// the workers are done.
	e.waitIdle()
	if e.state("api.shop:80") != apiState || e.state("10.96.0.6:80") != apiIPState {
		t.Fatal("a change of Service web recomputed the state of Service api")
	}
	if n := e.service.deps.size(); n == 0 {
		t.Fatal("no dependencies recorded")
	}
}

// A Pod change reaches the Services whose endpoints it backs: the pod joins the mesh and
// its endpoint gets an identity.
func TestPodChangeReachesItsServices(t *testing.T) {
	svc, _, _, _ := webObjects()
	plain := pod("shop", "web-1", "web", "")
	e := newEnv(t, svc, plain, slice("shop", "web", "web-x", map[string]int32{"http": 8080}, ep{ip: "10.1.0.1", pod: "web-1"}))
	s, byIP := e.subscribe(webFQDN), e.subscribe("10.96.0.5:80")
	for _, st := range []*stream{s, byIP} {
		if got := st.nextAdd(); len(got) != 1 || got[0].GetTlsIdentity() != "" {
			t.Fatalf("unmeshed pod: %v", got)
		}
	}
	meshed := pod("shop", "web-1", "web", "lightmesh")
	e.update(meshed)
	for _, st := range []*stream{s, byIP} {
		if got := st.nextAdd(); len(got) != 1 || got[0].GetTlsIdentity() != "spiffe://cluster.local/ns/shop/sa/web" {
			t.Fatalf("the pod joined the mesh: %v", got)
		}
	}
}

// A pod-IP authority follows the pod that gets (or loses) the IP, and a Service that takes
// a cluster IP is followed by its cluster-IP authority.
func TestIPAuthoritiesFollowTheirObjects(t *testing.T) {
	p := pod("shop", "web-1", "web", "lightmesh")
	e := newEnv(t, p)
	byPodIP, byClusterIP := e.subscribe("10.1.0.9:8080"), e.subscribe("10.96.0.9:80")
	for _, st := range []*stream{byPodIP, byClusterIP} {
		if ne := st.next().GetNoEndpoints(); ne == nil || ne.GetExists() {
			t.Fatalf("before: %v", ne)
		}
	}
	p.Status.PodIP, p.Status.PodIPs = "10.1.0.9", []corev1.PodIP{{IP: "10.1.0.9"}}
	e.update(p)
	if got := addrs(byPodIP.nextAdd()); !slices.Equal(got, []string{"10.1.0.9:8080"}) {
		t.Fatalf("the pod got the IP: %v", got)
	}
	svc := service("shop", "web", "10.96.0.9", servicePort("http", 80, intstr.FromInt32(8080)))
	if _, err := e.client.CoreV1().Services("shop").Create(e.ctx, svc, createOpts); err != nil {
		t.Fatal(err)
	}
	if ne := byClusterIP.next().GetNoEndpoints(); ne == nil || !ne.GetExists() {
		t.Fatalf("the Service took the cluster IP: %v", ne)
	}
}

// A pod-IP authority follows the Services of the pod's namespace: one created, changed or
// deleted after the subscription changes the protocol the pod's port declares.
func TestPodIPFollowsTheServicesSelectingIt(t *testing.T) {
	p := pod("shop", "db-0", "db", "lightmesh")
	p.Labels["app"] = "db"
	p.Status.PodIP, p.Status.PodIPs = "10.1.0.9", []corev1.PodIP{{IP: "10.1.0.9"}}
	e := newEnv(t, p)
	s := e.subscribe("10.1.0.9:8080")
	if got := s.nextAdd(); len(got) != 1 || got[0].GetAppProtocol() != "" {
		t.Fatalf("no Service: %v", got)
	}
	declares := func(step, want string) {
		t.Helper()
		if got := s.nextAdd(); len(got) != 1 || got[0].GetAppProtocol() != want {
			t.Fatalf("%s: got %v, want the endpoint declaring %q", step, got, want)
		}
	}
	svc := service("shop", "db", corev1.ClusterIPNone, servicePort("http", 80, intstr.FromInt32(8080)))
	svc.Spec.Selector = map[string]string{"app": "db"}
	if _, err := e.client.CoreV1().Services("shop").Create(e.ctx, svc, createOpts); err != nil {
		t.Fatal(err)
	}
	declares("a Service selecting the pod was created", "http")
	svc.Spec.Ports[0].Name = "grpc"
	e.update(svc)
	declares("the Service port was renamed", "grpc")
	if err := e.client.CoreV1().Services("shop").Delete(e.ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	declares("the Service was deleted", "")
}

// The last stream of an authority leaving closes its watch and forgets what it depended on.
func TestLastStreamLeavingClosesTheWatch(t *testing.T) {
	svc, p1, _, _ := webObjects()
	e := newEnv(t, svc, p1, slice("shop", "web", "web-x", map[string]int32{"http": 8080}, ep{ip: "10.1.0.1", pod: "web-1"}))
	a, b := e.subscribe(webFQDN), e.subscribe(webFQDN)
	a.nextAdd()
	b.nextAdd()
	a.cancel()
	b.cancel()
	deadline := time.Now().Add(waitFor)
	for e.watchCount() != 0 || e.service.deps.size() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d watches and %d dependency keys left after every stream ended", e.watchCount(), e.service.deps.size())
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
}

// waitIdle waits until no watch is queued or being computed.
func (e *env) waitIdle() {
	e.t.Helper()
	q := e.service.queue
	deadline := time.Now().Add(waitFor)
	for {
		q.mu.Lock()
		idle := q.workers == 0 && len(q.items) == 0
		q.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the work queue was still busy after %s", waitFor)
		}
		time.Sleep(5 * time.Millisecond) // polling, bounded by the deadline
	}
}

func (e *env) watchCount() int {
	e.service.watchMu.Lock()
	defer e.service.watchMu.Unlock()
	return len(e.service.watches)
}

// state is the current state of the watch of path (nil when none).
func (e *env) state(path string) *state {
	e.t.Helper()
	a, _, err := parseAuthority(path, DefaultClusterDomain)
	if err != nil {
		e.t.Fatal(err)
	}
	e.service.watchMu.Lock()
	defer e.service.watchMu.Unlock()
	w := e.service.watches[a]
	if w == nil {
		return nil
	}
	return w.cur.Load()
}

var createOpts = metav1.CreateOptions{}

type countingListener struct{ woken int }

func (c *countingListener) wake() { c.woken++ }

// A listener whose keys grew while an event fired may have missed it: replace says so, and
// each event wakes a listener once, whatever the number of its keys it fires.
func TestDepIndexMissedEvents(t *testing.T) {
	d := newDepIndex()
	l := &countingListener{}
	a, b := depKey{depService, "shop", "web"}, depKey{depPod, "shop", "web-1"}
	since := d.seen()
	if d.replace(l, nil, []depKey{a}, since) {
		t.Error("no event fired, yet a miss")
	}
	since = d.seen()
	d.fire(b) // fires while l computes a state that makes it depend on b
	if !d.replace(l, []depKey{a}, []depKey{a, b}, since) {
		t.Error("a key was added after an event fired: want a possible miss")
	}
	if d.replace(l, []depKey{a, b}, []depKey{a, b, b}, since) {
		t.Error("no key added: no miss")
	}
	d.fire(a, b, a)
	if l.woken != 1 {
		t.Errorf("woken %d times by one event, want 1", l.woken)
	}
	d.replace(l, []depKey{a, b}, nil, 0)
	if n := d.size(); n != 0 {
		t.Errorf("%d keys left after the listener left", n)
	}
}
