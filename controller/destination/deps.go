package destination

import (
	"runtime"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// depKind is the kind of thing a computed state depends on.
type depKind uint8

const (
	// depService is a Service by namespace/name: the object and its EndpointSlices.
	depService depKind = iota
	// depClusterIP is whichever Service has the cluster IP name.
	depClusterIP
	// depPod is a Pod by namespace/name.
	depPod
	// depPodIP is whichever Pod has the IP name.
	depPodIP
	// depExternal is the DNS answer of an ExternalName service's name.
	depExternal
	// depPolicy is the translated policy model.
	depPolicy
	// depNamespaceServices is every Service of a namespace (any of them added, changed or
	// deleted): a pod-IP authority reads the protocol its port declares from the Services
	// that select the pod.
	depNamespaceServices
)

// depKey is one thing a state depends on; an informer event fires the keys of its object
// (old and new), and only the listeners of those keys wake up.
type depKey struct {
	kind            depKind
	namespace, name string
}

// keysOf returns the keys an object of an informer event fires.
func keysOf(obj any, keys []depKey) []depKey {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	switch o := obj.(type) {
	case *corev1.Service:
		keys = append(keys, depKey{depService, o.Namespace, o.Name}, depKey{kind: depNamespaceServices, namespace: o.Namespace})
		ips := o.Spec.ClusterIPs
		if len(ips) == 0 && o.Spec.ClusterIP != "" {
			ips = []string{o.Spec.ClusterIP}
		}
		for _, ip := range ips {
			if ip != "" && ip != corev1.ClusterIPNone {
				keys = append(keys, depKey{kind: depClusterIP, name: ip})
			}
		}
	case *discoveryv1.EndpointSlice:
		if name := o.Labels[discoveryv1.LabelServiceName]; name != "" {
			keys = append(keys, depKey{depService, o.Namespace, name})
		}
	case *corev1.Pod:
		keys = append(keys, depKey{depPod, o.Namespace, o.Name})
		for _, ip := range o.Status.PodIPs {
			if ip.IP != "" {
				keys = append(keys, depKey{kind: depPodIP, name: ip.IP})
			}
		}
		if o.Status.PodIP != "" {
			keys = append(keys, depKey{kind: depPodIP, name: o.Status.PodIP})
		}
	}
	return keys
}

// listener is woken (it must not block) when a key it listens to fires.
type listener interface{ wake() }

// depIndex maps keys to the listeners that depend on them.
type depIndex struct {
	mu    sync.Mutex
	byKey map[depKey]map[listener]struct{}
	// events counts the fires so far: a listener whose keys grew after it read the caches
	// checks whether it may have missed one of the new keys' events.
	events uint64
}

func newDepIndex() *depIndex {
	return &depIndex{byKey: map[depKey]map[listener]struct{}{}}
}

// fire wakes the listeners of keys, each once. A key may have many listeners (every policy
// stream listens to the policy model), so listeners are collected in one pass per key.
func (d *depIndex) fire(keys ...depKey) {
	var woken []listener
	d.mu.Lock()
	d.events++
	if len(keys) == 1 {
		woken = make([]listener, 0, len(d.byKey[keys[0]]))
		for l := range d.byKey[keys[0]] {
			woken = append(woken, l)
		}
	} else {
		seen := map[listener]struct{}{}
		for _, k := range keys {
			for l := range d.byKey[k] {
				if _, dup := seen[l]; !dup {
					seen[l] = struct{}{}
					woken = append(woken, l)
				}
			}
		}
	}
	d.mu.Unlock()
	for _, l := range woken {
		l.wake()
	}
}

// seen returns the count of fires so far.
func (d *depIndex) seen() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.events
}

// replace makes l listen to keys (duplicates allowed) instead of old. It reports whether l
// may have missed an event: a key was added and some key fired since since (the count seen
// returned before l read the caches).
func (d *depIndex) replace(l listener, old, keys []depKey, since uint64) (missed bool) {
	want := make(map[depKey]struct{}, len(keys))
	for _, k := range keys {
		want[k] = struct{}{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range old {
		if _, keep := want[k]; keep {
			continue
		}
		if set := d.byKey[k]; set != nil {
			delete(set, l)
			if len(set) == 0 {
				delete(d.byKey, k)
			}
		}
	}
	added := false
	for k := range want {
		set := d.byKey[k]
		if set == nil {
			set = map[listener]struct{}{}
			d.byKey[k] = set
		}
		if _, ok := set[l]; !ok {
			set[l] = struct{}{}
			added = true
		}
	}
	return added && d.events != since
}

// size is the number of keys listened to (tests).
func (d *depIndex) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.byKey)
}

// watch is the shared state of one authority: every Get stream of the authority reads it.
// A worker computes it (one snapshot per change, whatever the number of streams) when a key
// it depends on fires, then wakes its subscribers; each subscriber diffs the newest state
// against what it last sent, in its own goroutine, so a slow stream delays no one.
type watch struct {
	s *Service
	a authority
	// cur is the newest state; nil until first computed. Never modified once stored.
	cur atomic.Pointer[state]

	// Guarded by s.watchMu.
	subs   map[*subscriber]struct{}
	deps   []depKey
	closed bool

	// Guarded by s.queue.mu.
	queued, running, again bool

	// Only the worker that runs the watch touches these: the ExternalName resolved for it.
	held, heldNS string
}

func (w *watch) wake() { w.s.queue.add(w) }

// subscriber is one stream's one-slot "newer state" signal: wake never blocks; a subscriber
// already woken has not read the state yet and will read the newest.
type subscriber struct {
	dirty chan struct{}
}

func newSubscriber() *subscriber { return &subscriber{dirty: make(chan struct{}, 1)} }

func (s *subscriber) wake() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// workQueue runs refresh on queued watches with at most max workers, started on demand
// (no goroutine while there is nothing to do). A watch is queued at most once; woken while
// running, it runs again after.
type workQueue struct {
	refresh func(*watch)
	max     int

	mu      sync.Mutex
	items   []*watch
	workers int
}

func newWorkQueue(refresh func(*watch)) *workQueue {
	return &workQueue{refresh: refresh, max: max(2, runtime.GOMAXPROCS(0))}
}

func (q *workQueue) add(w *watch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case w.queued:
	case w.running:
		w.again = true
	default:
		w.queued = true
		q.items = append(q.items, w)
		if q.workers < q.max {
			q.workers++
			go q.work()
		}
	}
}

func (q *workQueue) work() {
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.workers--
			q.items = nil // let the backing array go
			q.mu.Unlock()
			return
		}
		w := q.items[0]
		q.items[0] = nil
		q.items = q.items[1:]
		w.queued, w.running = false, true
		q.mu.Unlock()

		q.refresh(w)

		q.mu.Lock()
		w.running = false
		if w.again {
			w.again, w.queued = false, true
			q.items = append(q.items, w)
		}
		q.mu.Unlock()
	}
}

// refresh computes w's state, stores it, listens to what it depends on, and wakes w's
// subscribers. A closed watch only releases its ExternalName.
func (s *Service) refresh(w *watch) {
	s.watchMu.Lock()
	closed := w.closed
	s.watchMu.Unlock()
	if closed {
		s.hold(w, "", "")
		return
	}
	since := s.deps.seen()
	cur, deps := s.resolver.snapshot(w.a)
	if cur.externalName != w.held || cur.namespace != w.heldNS {
		s.hold(w, cur.externalName, cur.namespace)
		if w.held != "" {
			cur, deps = s.resolver.snapshot(w.a) // another watch may have an answer already
		}
	}
	s.watchMu.Lock()
	if w.closed {
		s.watchMu.Unlock()
		s.hold(w, "", "")
		return
	}
	missed := s.deps.replace(w, w.deps, deps, since)
	w.deps = deps
	w.cur.Store(&cur)
	for sub := range w.subs {
		sub.wake()
	}
	s.watchMu.Unlock()
	if missed {
		s.queue.add(w)
	}
}

// hold makes w resolve the external name name (of a service of namespace), none when "".
func (s *Service) hold(w *watch, name, namespace string) {
	if w.held == name && w.heldNS == namespace {
		return
	}
	if w.held != "" {
		s.resolver.external.release(w.held, w.heldNS)
	}
	w.held, w.heldNS = name, namespace
	if name != "" {
		s.resolver.external.acquire(name, namespace)
	}
}

// join adds sub to the watch of a (made and queued when it is the first); the returned func
// removes it, and closes the watch with its last subscriber.
func (s *Service) join(a authority, sub *subscriber) (*watch, func()) {
	s.watchMu.Lock()
	w, ok := s.watches[a]
	if !ok {
		w = &watch{s: s, a: a, subs: map[*subscriber]struct{}{}}
		s.watches[a] = w
		s.watchCount.Inc()
	}
	w.subs[sub] = struct{}{}
	s.watchMu.Unlock()
	if !ok {
		s.queue.add(w)
	} else if w.cur.Load() != nil {
		sub.wake()
	}
	s.subscribers.Inc()
	return w, func() {
		s.subscribers.Dec()
		s.watchMu.Lock()
		delete(w.subs, sub)
		last := len(w.subs) == 0
		if last {
			w.closed = true
			delete(s.watches, a)
			s.deps.replace(w, w.deps, nil, 0)
			w.deps = nil
			s.watchCount.Dec()
		}
		s.watchMu.Unlock()
		if last {
			s.queue.add(w) // a worker releases its ExternalName
		}
	}
}

// listen makes sub listen to keys until the returned func is called.
func (s *Service) listen(sub *subscriber, keys ...depKey) func() {
	s.deps.replace(sub, nil, keys, 0)
	s.subscribers.Inc()
	return func() {
		s.deps.replace(sub, keys, nil, 0)
		s.subscribers.Dec()
	}
}
