package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	meshpolicy "github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/policy/translate"
)

// Defaults of Options.
const (
	DefaultRetryInterval = 30 * time.Second
	DefaultCoalesce      = 100 * time.Millisecond
	DefaultSyncTimeout   = time.Minute
)

// Kind is one kind of resource the watcher reads, with the versions it accepts, newest
// first.
type Kind struct {
	Group    string
	Resource string
	Kind     string
	Versions []string
}

// Kinds are the resources the watcher reads.
var Kinds = []Kind{
	{Group: "networking.istio.io", Resource: "virtualservices", Kind: "VirtualService", Versions: []string{"v1", "v1beta1", "v1alpha3"}},
	{Group: "networking.istio.io", Resource: "destinationrules", Kind: "DestinationRule", Versions: []string{"v1", "v1beta1", "v1alpha3"}},
	{Group: "networking.istio.io", Resource: "gateways", Kind: "Gateway", Versions: []string{"v1", "v1beta1", "v1alpha3"}},
	{Group: "security.istio.io", Resource: "peerauthentications", Kind: "PeerAuthentication", Versions: []string{"v1", "v1beta1"}},
	{Group: "security.istio.io", Resource: "authorizationpolicies", Kind: "AuthorizationPolicy", Versions: []string{"v1", "v1beta1"}},
	{Group: "gateway.networking.k8s.io", Resource: "httproutes", Kind: "HTTPRoute", Versions: []string{"v1"}},
}

// Discovery is the part of the API server's discovery client the watcher uses
// (discovery.DiscoveryInterface has it).
type Discovery interface {
	ServerResourcesForGroupVersion(groupVersion string) (*metav1.APIResourceList, error)
}

// Options configure a Watcher.
type Options struct {
	// Client reads the resources and writes their status. Required.
	Client dynamic.Interface
	// Discovery finds the versions the API server serves. Required.
	Discovery Discovery
	// DomainSuffix is the cluster's DNS domain; "cluster.local" when empty.
	DomainSuffix string
	// RetryInterval is how often a kind whose CRD is absent is looked for again;
	// DefaultRetryInterval when zero.
	RetryInterval time.Duration
	// Coalesce is how long the watcher waits after a change for more before translating;
	// DefaultCoalesce when zero.
	Coalesce time.Duration
	// SyncTimeout bounds the wait for a kind's cache to fill; DefaultSyncTimeout when zero.
	SyncTimeout time.Duration
	// WriteStatus, when false, only logs unsupported fields and invalid resources.
	WriteStatus bool
	// Logger receives the logs; nil means slog.Default().
	Logger *slog.Logger
	// Now tells the time (condition transition times); nil means time.Now.
	Now func() time.Time
	// GatewayNamespace is the namespace of the ingress gateway pods (mesh install --ingress
	// puts them in the control plane's), where the Secrets named by HTTPS Gateway servers'
	// tls.credentialName are read, as Istio reads them in the gateway's namespace. Its
	// Secrets are watched only once some Gateway needs one. Empty: no credential is read.
	GatewayNamespace string
}

// Watcher keeps the translated policy model of the cluster's resources. Create it with New,
// register OnChange callbacks, then Run.
type Watcher struct {
	opts Options
	log  *slog.Logger

	model   atomic.Pointer[meshpolicy.Model]
	synced  atomic.Bool
	changed chan struct{}

	mu        sync.Mutex
	informers map[string]*kindInformer // by Kind.Kind
	watchers  []func()
	logged    map[string]string         // resource key -> "generation/report" logged
	secrets   cache.SharedIndexInformer // the gateway namespace's Secrets, once needed
	written   map[string]string         // resource key -> "resourceVersion/status" written
}

type kindInformer struct {
	kind     Kind
	gvr      schema.GroupVersionResource
	informer cache.SharedIndexInformer
}

// New returns a watcher with an empty model.
func New(opts Options) (*Watcher, error) {
	if opts.Client == nil || opts.Discovery == nil {
		return nil, errors.New("policy watcher: give a dynamic client and a discovery client")
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &Watcher{
		opts: opts, log: opts.Logger, changed: make(chan struct{}, 1),
		informers: map[string]*kindInformer{}, logged: map[string]string{}, written: map[string]string{},
	}
	w.model.Store(&meshpolicy.Model{})
	return w, nil
}

// Model returns the current model. It must not be modified.
func (w *Watcher) Model() *meshpolicy.Model { return w.model.Load() }

// Synced reports whether the first translation is done (every kind found at start has
// filled its cache).
func (w *Watcher) Synced() bool { return w.synced.Load() }

// OnChange registers fn, called after each new model. fn must not block.
func (w *Watcher) OnChange(fn func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watchers = append(w.watchers, fn)
}

// Watched returns the group/version/resource of every kind being watched.
func (w *Watcher) Watched() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, ki := range w.informers {
		out = append(out, ki.gvr.String())
	}
	slices.Sort(out)
	return out
}

// Run watches until ctx ends. It returns nil then.
func (w *Watcher) Run(ctx context.Context) error {
	w.discover(ctx)
	w.translate(ctx)
	w.synced.Store(true)
	retry := time.NewTicker(w.opts.RetryInterval)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			if w.discover(ctx) {
				w.translate(ctx)
			}
		case <-w.changed:
			// Coalesce a burst of events into one translation.
			timer := time.NewTimer(w.opts.Coalesce)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
			select {
			case <-w.changed:
			default:
			}
			w.translate(ctx)
		}
	}
}

// discover starts the informers of the kinds the API server now serves; it returns whether
// it started one.
func (w *Watcher) discover(ctx context.Context) bool {
	var started []*kindInformer
	for _, kind := range Kinds {
		w.mu.Lock()
		_, ok := w.informers[kind.Kind]
		w.mu.Unlock()
		if ok {
			continue
		}
		version, found := w.servedVersion(kind)
		if !found {
			w.log.Debug("not served by the API server; looking again later", "kind", kind.Kind, "group", kind.Group, "retry", w.opts.RetryInterval.String())
			continue
		}
		gvr := schema.GroupVersionResource{Group: kind.Group, Version: version, Resource: kind.Resource}
		inf := dynamicinformer.NewFilteredDynamicInformer(w.opts.Client, gvr, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
		mark := func(any) { w.markChanged() }
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: mark, UpdateFunc: func(_, obj any) { mark(obj) }, DeleteFunc: mark,
		}); err != nil {
			w.log.Error("cannot watch", "resource", gvr.String(), "error", err)
			continue
		}
		ki := &kindInformer{kind: kind, gvr: gvr, informer: inf}
		go inf.RunWithContext(ctx)
		started = append(started, ki)
		w.log.Info("watching", "resource", gvr.String())
	}
	if len(started) == 0 {
		return false
	}
	syncCtx, cancel := context.WithTimeout(ctx, w.opts.SyncTimeout)
	defer cancel()
	for _, ki := range started {
		if !cache.WaitForCacheSync(syncCtx.Done(), ki.informer.HasSynced) {
			w.log.Warn("the cache did not fill in time: check the controller's RBAC (get, list, watch)", "resource", ki.gvr.String(), "timeout", w.opts.SyncTimeout.String())
		}
		w.mu.Lock()
		w.informers[ki.kind.Kind] = ki
		w.mu.Unlock()
	}
	return true
}

// servedVersion returns the newest version of kind the API server serves.
func (w *Watcher) servedVersion(kind Kind) (string, bool) {
	for _, v := range kind.Versions {
		list, err := w.opts.Discovery.ServerResourcesForGroupVersion(kind.Group + "/" + v)
		if err != nil || list == nil {
			continue
		}
		for _, r := range list.APIResources {
			if r.Name == kind.Resource {
				return v, true
			}
		}
	}
	return "", false
}

func (w *Watcher) markChanged() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// objects returns every object of every watched kind, in a stable order.
func (w *Watcher) objects() ([]*unstructured.Unstructured, map[string]*kindInformer) {
	w.mu.Lock()
	kinds := make(map[string]*kindInformer, len(w.informers))
	for k, v := range w.informers {
		kinds[k] = v
	}
	w.mu.Unlock()
	var out []*unstructured.Unstructured
	for _, kind := range Kinds {
		ki, ok := kinds[kind.Kind]
		if !ok {
			continue
		}
		for _, obj := range ki.informer.GetStore().List() {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				out = append(out, u)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int {
		return compareKeys(objectKey(a), objectKey(b))
	})
	return out, kinds
}

func compareKeys(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// translate translates every object, publishes the model when it changed, and reports.
func (w *Watcher) translate(ctx context.Context) {
	objects, kinds := w.objects()
	result, err := translate.TranslateObjects(objects, translate.Options{DomainSuffix: w.opts.DomainSuffix})
	model := result.Model
	w.model.Store(&model)
	w.mu.Lock()
	watchers := slices.Clone(w.watchers)
	w.mu.Unlock()
	for _, fn := range watchers {
		fn()
	}
	reports := collectReports(result.Unsupported, err)
	if needsSecrets(&model) {
		w.startSecrets(ctx)
	}
	for gw, problems := range w.credentialProblems(&model) {
		key := "Gateway " + gw
		rep := reports[key]
		if rep == nil {
			rep = &report{}
			reports[key] = rep
		}
		rep.credentialsChecked, rep.credentials = true, problems
	}
	for _, obj := range objects {
		key := objectKey(obj)
		rep := reports[key]
		w.logOnce(obj, key, rep)
		if w.opts.WriteStatus {
			if ki, ok := kinds[obj.GetKind()]; ok {
				w.writeStatus(ctx, ki, obj, key, rep)
			}
		}
	}
	w.forget(objects)
}

// objectKey is "Kind namespace/name", as translate.ResourceRef.String.
func objectKey(obj *unstructured.Unstructured) string {
	return obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()
}

// forget drops the bookkeeping of deleted objects.
func (w *Watcher) forget(objects []*unstructured.Unstructured) {
	live := make(map[string]bool, len(objects))
	for _, obj := range objects {
		live[objectKey(obj)] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.logged {
		if !live[k] {
			delete(w.logged, k)
		}
	}
	for k := range w.written {
		if !live[k] {
			delete(w.written, k)
		}
	}
}

// logOnce logs rep once per generation of obj (and again when the report changes).
func (w *Watcher) logOnce(obj *unstructured.Unstructured, key string, rep *report) {
	if rep == nil {
		return
	}
	mark := fmt.Sprintf("%d/%s", obj.GetGeneration(), rep.String())
	w.mu.Lock()
	seen := w.logged[key] == mark
	w.logged[key] = mark
	w.mu.Unlock()
	if seen {
		return
	}
	for _, e := range rep.errors {
		w.log.Warn("invalid resource: left out of the policy", "resource", key, "generation", obj.GetGeneration(), "error", e.Error())
	}
	for _, u := range rep.unsupported {
		w.log.Warn("unsupported field: not applied", "resource", key, "generation", obj.GetGeneration(), "field", u.FieldPath, "reason", u.Reason)
	}
	for _, c := range rep.credentials {
		w.log.Warn("Gateway credential unusable", "resource", key, "generation", obj.GetGeneration(), "problem", c)
	}
}
