package destination

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// clusterIPIndex indexes Services by their cluster IPs, podIPIndex Pods by their IPs.
// serviceIndex indexes EndpointSlices by namespace/service.
const (
	clusterIPIndex = "clusterIP"
	podIPIndex     = "podIP"
	serviceIndex   = "service"
)

// Informers is the one wrapper of the shared informers the service reads: Services (indexed by
// cluster IP), EndpointSlices and Pods. Create it with NewInformers, give it to New, then
// Start.
type Informers struct {
	factory   informers.SharedInformerFactory
	services  cache.SharedIndexInformer
	slices    cache.SharedIndexInformer
	pods      cache.SharedIndexInformer
	svcLister corev1Lister
	podLister corelisters.PodLister
}

type corev1Lister = corelisters.ServiceLister

// NewInformers creates the informers of client; resync 0 (events only).
func NewInformers(client kubernetes.Interface) (*Informers, error) {
	factory := informers.NewSharedInformerFactory(client, 0)
	i := &Informers{factory: factory}
	svc := factory.Core().V1().Services()
	eps := factory.Discovery().V1().EndpointSlices()
	pods := factory.Core().V1().Pods()
	i.services, i.slices, i.pods = svc.Informer(), eps.Informer(), pods.Informer()
	i.svcLister, i.podLister = svc.Lister(), pods.Lister()
	if err := i.services.AddIndexers(cache.Indexers{clusterIPIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*corev1.Service)
		if !ok {
			return nil, nil
		}
		var ips []string
		for _, ip := range s.Spec.ClusterIPs {
			if ip != "" && ip != corev1.ClusterIPNone {
				ips = append(ips, ip)
			}
		}
		return ips, nil
	}}); err != nil {
		return nil, fmt.Errorf("index services by cluster IP: %w", err)
	}
	if err := i.slices.AddIndexers(cache.Indexers{serviceIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
	}}); err != nil {
		return nil, fmt.Errorf("index endpoint slices by service: %w", err)
	}
	if err := i.pods.AddIndexers(cache.Indexers{podIPIndex: func(obj any) ([]string, error) {
		p, ok := obj.(*corev1.Pod)
		// Host-network pods share the node's IP: an IP names no single pod then.
		if !ok || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return nil, nil
		}
		var ips []string
		for _, ip := range p.Status.PodIPs {
			if ip.IP != "" {
				ips = append(ips, ip.IP)
			}
		}
		if len(ips) == 0 && p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
		return ips, nil
	}}); err != nil {
		return nil, fmt.Errorf("index pods by IP: %w", err)
	}
	return i, nil
}

// onEvent calls fn with the keys (keysOf) of every Service, EndpointSlice or Pod added,
// updated (old and new object) or deleted. fn must not block.
func (i *Informers) onEvent(fn func(keys []depKey)) error {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { fn(keysOf(obj, nil)) },
		UpdateFunc: func(old, obj any) { fn(keysOf(obj, keysOf(old, nil))) },
		DeleteFunc: func(obj any) { fn(keysOf(obj, nil)) },
	}
	for _, inf := range []cache.SharedIndexInformer{i.services, i.slices, i.pods} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("add informer handler: %w", err)
		}
	}
	return nil
}

// Start starts the informers and waits (at most timeout) until their caches are filled.
func (i *Informers) Start(ctx context.Context, timeout time.Duration) error {
	i.factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), i.services.HasSynced, i.slices.HasSynced, i.pods.HasSynced) {
		return fmt.Errorf("the Service, EndpointSlice and Pod caches did not fill within %s: check the controller's RBAC (list/watch services, endpointslices, pods) and the API server", timeout)
	}
	return nil
}

// Synced reports whether every cache is filled.
func (i *Informers) Synced() bool {
	return i.services.HasSynced() && i.slices.HasSynced() && i.pods.HasSynced()
}

// Shutdown waits for the informers' goroutines after ctx (given to Start) ended.
func (i *Informers) Shutdown() { i.factory.Shutdown() }

func (i *Informers) service(namespace, name string) (*corev1.Service, bool) {
	s, err := i.svcLister.Services(namespace).Get(name)
	return s, err == nil
}

// namespaceServices returns the Services of namespace (from the cache's namespace index).
func (i *Informers) namespaceServices(namespace string) []*corev1.Service {
	list, err := i.svcLister.Services(namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	return list
}

func (i *Informers) serviceByIP(ip string) (*corev1.Service, bool) {
	objs, err := i.services.GetIndexer().ByIndex(clusterIPIndex, ip)
	if err != nil || len(objs) == 0 {
		return nil, false
	}
	s, ok := objs[0].(*corev1.Service)
	return s, ok
}

func (i *Informers) endpointSlices(namespace, service string) []*discoveryv1.EndpointSlice {
	objs, err := i.slices.GetIndexer().ByIndex(serviceIndex, namespace+"/"+service)
	if err != nil {
		return nil
	}
	list := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, obj := range objs {
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
			list = append(list, s)
		}
	}
	return list
}

func (i *Informers) pod(namespace, name string) (*corev1.Pod, bool) {
	p, err := i.podLister.Pods(namespace).Get(name)
	return p, err == nil
}

// podByIP returns the one running pod with ip (none when several claim it).
func (i *Informers) podByIP(ip string) (*corev1.Pod, bool) {
	objs, err := i.pods.GetIndexer().ByIndex(podIPIndex, ip)
	if err != nil || len(objs) != 1 {
		return nil, false
	}
	p, ok := objs[0].(*corev1.Pod)
	return p, ok
}
