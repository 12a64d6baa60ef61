package destination

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
)

// The scale of issue 7: services, endpoints (spread evenly over the services) and Get
// streams (spread evenly over the services) in one destination service.
const (
	scaleServices  = 1000
	scaleEndpoints = 10000
	scaleStreams   = 5000
)

// BenchmarkScale measures, with 1,000 services, 10,000 endpoints (each a pod of the mesh) and
// 5,000 open Get streams in one service over the fake clientset, how long an endpoint change
// (one endpoint of one service turning not ready, or ready again) takes to reach every stream
// of that service: each iteration is one change, and it ends when all of the service's
// streams have received it. It reports the propagation latency (p50, p99, max over all
// stream deliveries; write-p50/p99 is the fake clientset's own Update call, which the latency
// includes; event-p50/p99 is from the informer event, seen by a handler of the benchmark's
// own, to each delivery, which leaves the write out) and the heap and resident memory with everything open. The services are spread
// over namespaces=N namespaces (the service used to wake every stream of a changed namespace;
// it now wakes only the watch of the changed Service).
//
//	go test ./controller/destination -run '^$' -bench BenchmarkScale -benchtime 300x
func BenchmarkScale(b *testing.B) {
	for _, namespaces := range []int{100, 10, 1} {
		b.Run(fmt.Sprintf("namespaces=%d", namespaces), func(b *testing.B) { benchmarkScale(b, namespaces) })
	}
}

func benchmarkScale(b *testing.B, namespaces int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	perService := scaleEndpoints / scaleServices
	objects := make([]runtime.Object, 0, scaleServices*2+scaleEndpoints)
	for i := range scaleServices {
		objects = append(objects, scaleObjects(i, namespaces, perService)...)
	}
	client := fake.NewClientset(objects...)
	informers, err := NewInformers(client)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := New(Options{Informers: informers, ControlPlaneNamespace: "lightmesh",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	// eventAt is when an informer handler of the benchmark's own saw the last EndpointSlice
	// update: latencies from it leave the fake clientset's write out.
	var eventAt atomic.Int64
	if _, err := informers.slices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, _ any) { eventAt.Store(time.Now().UnixNano()) },
	}); err != nil {
		b.Fatal(err)
	}
	if err := informers.Start(ctx, 2*time.Minute); err != nil {
		b.Fatal(err)
	}
	defer informers.Shutdown()
	heapCaches := heapInUse()

	// The streams: scaleStreams/scaleServices per service, each a Get with a stream that
	// records when each update arrived.
	streamsPer := scaleStreams / scaleServices
	subs := make([][]*scaleStream, scaleServices)
	var ended sync.WaitGroup
	for i := range scaleServices {
		ns, name := scaleName(i, namespaces)
		for range streamsPer {
			s := newScaleStream(ctx)
			subs[i] = append(subs[i], s)
			ended.Go(func() {
				if err := svc.Get(&destinationv1.GetDestination{Path: name + "." + ns + ".svc.cluster.local:80"}, s); err != nil {
					b.Errorf("Get: %v", err)
				}
			})
		}
	}
	defer ended.Wait()
	defer cancel()
	// Every stream got its full set first.
	for i, ss := range subs {
		for _, s := range ss {
			select {
			case u := <-s.updates:
				if got := len(u.update.GetAdd().GetAddrs()); got != perService {
					b.Fatalf("service %d: the first update had %d endpoints, want %d: %v", i, got, perService, u.update)
				}
			case <-time.After(time.Minute):
				b.Fatalf("service %d: no first update within a minute", i)
			}
		}
	}
	heapAll, rss := heapInUse(), rssBytes()

	var latencies, writes, fromEvent []time.Duration
	down := map[int]bool{} // services whose first endpoint is not ready now
	n := 0
	cpuBefore := processCPU(b)
	for b.Loop() {
		// Each change goes to another service, in another namespace when there are several.
		i := (n * 7919) % scaleServices
		n++
		ns, name := scaleName(i, namespaces)
		slice, err := client.DiscoveryV1().EndpointSlices(ns).Get(ctx, name+"-1", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		nowReady := down[i] // the endpoint goes away, next time it comes back
		down[i] = !nowReady
		slice.Endpoints[0].Conditions.Ready = &nowReady
		eventAt.Store(0)
		changed := time.Now()
		if _, err := client.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		writes = append(writes, time.Since(changed))
		var arrivals []time.Time
		for _, s := range subs[i] {
			select {
			case u := <-s.updates:
				wantAdd := nowReady
				if (u.update.GetAdd() != nil) != wantAdd || (u.update.GetRemove() != nil) == wantAdd {
					b.Fatalf("service %d: got %v, want the endpoint %s", i, u.update, map[bool]string{true: "added", false: "removed"}[wantAdd])
				}
				latencies = append(latencies, u.at.Sub(changed))
				arrivals = append(arrivals, u.at)
			case <-time.After(time.Minute):
				b.Fatalf("service %d: a stream got no update within a minute of the change", i)
			}
		}
		// The benchmark's handler runs beside the service's: wait (bounded) until it ran.
		for deadline := time.Now().Add(time.Second); eventAt.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond) // polling another goroutine, bounded by the deadline
		}
		if at := eventAt.Load(); at != 0 {
			for _, a := range arrivals {
				fromEvent = append(fromEvent, max(0, a.Sub(time.Unix(0, at))))
			}
		}
	}
	b.StopTimer()
	cpu := processCPU(b) - cpuBefore
	if len(latencies) == 0 {
		return
	}
	// CPU of the whole process per change: the service, the fake clientset's writes and the
	// benchmark's own bookkeeping, so an upper bound of the controller's.
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(n), "cpu-ms/change")
	slices.Sort(latencies)
	slices.Sort(writes)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	if len(fromEvent) > 0 {
		// From the informer event to each stream's Send: the service's own share.
		slices.Sort(fromEvent)
		b.ReportMetric(ms(fromEvent[len(fromEvent)/2]), "event-p50-ms")
		b.ReportMetric(ms(fromEvent[len(fromEvent)*99/100]), "event-p99-ms")
	}
	// The fake clientset's own Update call (field management, copies) is inside the latency.
	b.ReportMetric(ms(writes[len(writes)/2]), "write-p50-ms")
	b.ReportMetric(ms(writes[len(writes)*99/100]), "write-p99-ms")
	b.ReportMetric(ms(latencies[len(latencies)/2]), "p50-ms")
	b.ReportMetric(ms(latencies[len(latencies)*99/100]), "p99-ms")
	b.ReportMetric(ms(latencies[len(latencies)-1]), "max-ms")
	b.ReportMetric(float64(heapCaches)/(1<<20), "heap-caches-MiB")
	b.ReportMetric(float64(heapAll)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
}

// scaleName is the namespace and name of service i.
func scaleName(i, namespaces int) (ns, name string) {
	return fmt.Sprintf("ns-%d", i%namespaces), fmt.Sprintf("svc-%d", i)
}

// scaleObjects are service i with its EndpointSlice and the pods behind it, meshed by the
// control plane "lightmesh" (so each endpoint gets an identity).
func scaleObjects(i, namespaces, endpoints int) []runtime.Object {
	ns, name := scaleName(i, namespaces)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: scaleIP(10, 96, i), ClusterIPs: []string{scaleIP(10, 96, i)},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}},
	}
	portName, port, zone := "http", int32(8080), "zone-a"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
	}
	objects := []runtime.Object{svc, slice}
	controller := true
	for e := range endpoints {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-abc12-%d", name, e),
				Labels:          map[string]string{"app": name, "pod-template-hash": "abc12", "lightmesh.io/control-plane-ns": "lightmesh"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name + "-abc12", Controller: &controller}}},
			Spec: corev1.PodSpec{ServiceAccountName: name,
				InitContainers: []corev1.Container{{Name: "mesh-proxy"}}, Containers: []corev1.Container{{Name: "app"}}},
		}
		ready, terminating := true, false
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{scaleIP(10, 200, i*endpoints+e)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Terminating: &terminating},
			Zone:       &zone,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name},
		})
		objects = append(objects, pod)
	}
	return objects
}

// scaleIP is the n-th address of a.b.0.0/16.
func scaleIP(a, b, n int) string {
	return fmt.Sprintf("%d.%d.%d.%d", a, b, n/256%256, n%256)
}

// scaleStream is a Get stream that hands each update, with its arrival time, to the benchmark.
type scaleStream struct {
	grpc.ServerStream
	ctx     context.Context
	updates chan scaleUpdate
}

type scaleUpdate struct {
	at     time.Time
	update *destinationv1.Update
}

func newScaleStream(ctx context.Context) *scaleStream {
	return &scaleStream{ctx: ctx, updates: make(chan scaleUpdate, 16)}
}

func (s *scaleStream) Context() context.Context { return s.ctx }

func (s *scaleStream) Send(u *destinationv1.Update) error {
	select {
	case s.updates <- scaleUpdate{at: time.Now(), update: u}:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// heapInUse collects garbage and returns the bytes of heap in use.
func heapInUse() uint64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapInuse
}

// rssBytes is the process's resident memory (VmRSS), 0 when /proc does not say.
func rssBytes() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
