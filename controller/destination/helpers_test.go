package destination

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	"github.com/lightmesh/lightmesh/internal/inject"
)

// waitFor bounds every wait of the tests.
const waitFor = 10 * time.Second

type env struct {
	t       *testing.T
	ctx     context.Context
	client  *fake.Clientset
	service *Service
}

func newEnv(t *testing.T, objects ...runtime.Object) *env {
	t.Helper()
	return newEnvWith(t, Options{}, objects...)
}

// newEnvWith is newEnv with options; DNSServers default to a loopback server that answers
// nothing (REFUSED), so no test asks the machine's resolvers.
func newEnvWith(t *testing.T, opts Options, objects ...runtime.Object) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client := fake.NewClientset(objects...)
	informers, err := NewInformers(client)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.DNSServers) == 0 {
		opts.DNSServers = []string{newDNSServer(t).addr}
	}
	opts.Informers = informers
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := informers.Start(ctx, waitFor); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); informers.Shutdown() })
	return &env{t: t, ctx: ctx, client: client, service: svc}
}

// stream is a subscription whose updates arrive on a channel.
type stream struct {
	t       *testing.T
	updates chan *destinationv1.Update
	done    chan error
	cancel  context.CancelFunc
}

func (e *env) subscribe(path string) *stream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	s := &stream{t: e.t, updates: make(chan *destinationv1.Update, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		s.done <- e.service.Subscribe(ctx, path, func(u *destinationv1.Update) error {
			select {
			case s.updates <- u:
			case <-ctx.Done():
			}
			return nil
		})
	}()
	e.t.Cleanup(cancel)
	return s
}

func (s *stream) next() *destinationv1.Update {
	s.t.Helper()
	select {
	case u := <-s.updates:
		return u
	case err := <-s.done:
		s.t.Fatalf("the subscription ended: %v", err)
	case <-time.After(waitFor):
		s.t.Fatalf("no update within %s", waitFor)
	}
	return nil
}

func (s *stream) nextAdd() []*destinationv1.WeightedAddr {
	s.t.Helper()
	u := s.next()
	if u.GetAdd() == nil {
		s.t.Fatalf("got %v, want an Add", u)
	}
	return u.GetAdd().GetAddrs()
}

func (s *stream) nextRemove() []string {
	s.t.Helper()
	u := s.next()
	if u.GetRemove() == nil {
		s.t.Fatalf("got %v, want a Remove", u)
	}
	var out []string
	for _, a := range u.GetRemove().GetAddrs() {
		out = append(out, addrKey(a).String())
	}
	return out
}

func addrs(was []*destinationv1.WeightedAddr) []string {
	var out []string
	for _, wa := range was {
		out = append(out, addrKey(wa.GetAddr()).String())
	}
	slices.Sort(out)
	return out
}

func service(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports},
	}
}

func servicePort(name string, port int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: target, Protocol: corev1.ProtocolTCP}
}

type ep struct {
	ip, pod            string
	notReady, terminat bool
}

func slice(ns, svc, name string, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: new(n), Port: new(p)})
	}
	zone := "zone-a"
	for _, e := range eps {
		ready, term := !e.notReady, e.terminat
		end := discoveryv1.Endpoint{Addresses: []string{e.ip}, Zone: &zone,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Terminating: &term}}
		if e.pod != "" {
			end.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod}
		}
		s.Endpoints = append(s.Endpoints, end)
	}
	return s
}

// pod is a pod of Deployment deploy; meshedBy "" is not injected, else the control plane
// namespace of its proxy.
func pod(ns, name, sa, meshedBy string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod-template-hash": "abc12"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc12", Controller: new(true)}}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app"}}},
	}
	if meshedBy != "" {
		p.Labels[inject.LabelControlPlaneNS] = meshedBy
		p.Spec.InitContainers = []corev1.Container{{Name: inject.ProxyContainerName}}
	}
	return p
}

func (e *env) update(obj runtime.Object) {
	e.t.Helper()
	var err error
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		_, err = e.client.DiscoveryV1().EndpointSlices(o.Namespace).Update(e.ctx, o, metav1.UpdateOptions{})
	case *corev1.Service:
		_, err = e.client.CoreV1().Services(o.Namespace).Update(e.ctx, o, metav1.UpdateOptions{})
	case *corev1.Pod:
		_, err = e.client.CoreV1().Pods(o.Namespace).Update(e.ctx, o, metav1.UpdateOptions{})
	default:
		e.t.Fatalf("cannot update %T", obj)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}
