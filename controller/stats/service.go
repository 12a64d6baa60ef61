package stats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/inject"
)

// Defaults of Options.
const (
	DefaultScrapeInterval = 10 * time.Second
	DefaultScrapeTimeout  = 5 * time.Second
	DefaultConcurrency    = 16
)

// Options configure a Service. Client is required; the rest have defaults.
type Options struct {
	Client        kubernetes.Interface
	ScrapeTimeout time.Duration
	Concurrency   int
	Retention     time.Duration
	AdminPort     int // the proxies' admin port (4191)
	HTTPClient    *http.Client
	Now           func() time.Time
	Logger        *slog.Logger
	// MetricsURL returns the metrics URL of a pod; tests point it at httptest servers.
	MetricsURL func(pod *corev1.Pod) string
	// PrometheusURL, when set, is the base URL of a Prometheus that scrapes the proxies (as
	// install's add-on does): the answers then come from PromQL queries to it, each bounded
	// by PrometheusTimeout, and the service scrapes nothing itself.
	PrometheusURL     string
	PrometheusTimeout time.Duration
}

// Service scrapes meshed pods and answers the stats API.
type Service struct {
	opts     Options
	factory  informers.SharedInformerFactory
	pods     corelisters.PodLister
	synced   cache.InformerSynced
	store    *store
	prom     *promClient // nil: answer from the store
	mu       sync.Mutex
	lastErrs map[podKey]string
}

// New returns a service whose pod informer is not started yet.
func New(opts Options) (*Service, error) {
	if opts.Client == nil {
		return nil, errors.New("stats: a Kubernetes client is required")
	}
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = DefaultScrapeTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.AdminPort == 0 {
		opts.AdminPort = inject.AdminPort
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MetricsURL == nil {
		port := strconv.Itoa(opts.AdminPort)
		opts.MetricsURL = func(pod *corev1.Pod) string {
			return "http://" + net.JoinHostPort(pod.Status.PodIP, port) + "/metrics"
		}
	}
	if opts.PrometheusTimeout <= 0 {
		opts.PrometheusTimeout = DefaultPrometheusTimeout
	}
	var prom *promClient
	if opts.PrometheusURL != "" {
		u, err := url.Parse(opts.PrometheusURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("prometheus URL %q: give the server's base URL, such as http://prometheus.lightmesh.svc:9090", opts.PrometheusURL)
		}
		prom = &promClient{base: strings.TrimSuffix(opts.PrometheusURL, "/"), http: opts.HTTPClient, timeout: opts.PrometheusTimeout}
	}
	factory := informers.NewSharedInformerFactory(opts.Client, 0)
	podInformer := factory.Core().V1().Pods()
	s := &Service{
		opts: opts, factory: factory,
		pods: podInformer.Lister(), synced: podInformer.Informer().HasSynced,
		store: newStore(opts.Retention), prom: prom, lastErrs: map[podKey]string{},
	}
	return s, nil
}

// Start starts the pod informer and waits up to timeout for its cache.
func (s *Service) Start(ctx context.Context, timeout time.Duration) error {
	s.factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), s.synced) {
		return fmt.Errorf("the pod cache did not fill within %s: check the API server and the service's RBAC (list, watch pods)", timeout)
	}
	return nil
}

// Synced reports whether the pod cache is filled (the admin server's /ready).
func (s *Service) Synced() bool { return s.synced() }

// Shutdown stops the informer.
func (s *Service) Shutdown() { s.factory.Shutdown() }

// Meshed reports whether pod has the mesh proxy (a native sidecar or a container).
func Meshed(pod *corev1.Pod) bool {
	if _, ok := pod.Labels[inject.LabelControlPlaneNS]; ok {
		return true
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == inject.ProxyContainerName {
			return true
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == inject.ProxyContainerName {
			return true
		}
	}
	return false
}

// Run scrapes every meshed running pod at once and then at every tick, until ctx ends. With
// a Prometheus URL it scrapes nothing: Prometheus does.
func (s *Service) Run(ctx context.Context, tick <-chan time.Time) {
	if s.prom != nil {
		<-ctx.Done()
		return
	}
	s.ScrapeOnce(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			s.ScrapeOnce(ctx)
		}
	}
}

// ScrapeOnce scrapes every meshed running pod with an IP, at most Concurrency at a time, and
// forgets pods that are gone.
func (s *Service) ScrapeOnce(ctx context.Context) {
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		s.opts.Logger.Error("list pods", "err", err)
		return
	}
	live := map[podKey]bool{}
	sem := make(chan struct{}, s.opts.Concurrency)
	var wg sync.WaitGroup
	for _, pod := range pods {
		if !Meshed(pod) || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
			continue
		}
		k := podKey{pod.Namespace, pod.Name}
		live[k] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			smp, err := s.scrape(ctx, pod)
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				if s.lastErrs[k] != err.Error() {
					s.opts.Logger.Warn("scrape a proxy", "pod", pod.Namespace+"/"+pod.Name, "err", err)
				}
				s.lastErrs[k] = err.Error()
				return
			}
			delete(s.lastErrs, k)
			s.store.add(k, string(pod.UID), s.opts.Now(), smp)
		}()
	}
	wg.Wait()
	s.store.retain(func(k podKey) bool { return live[k] })
}

func (s *Service) scrape(ctx context.Context, pod *corev1.Pod) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ScrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.opts.MetricsURL(pod), nil)
	if err != nil {
		return sample{}, err
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return sample{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return sample{}, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	return parseSample(http.MaxBytesReader(nil, resp.Body, 16<<20))
}

// Resource types of the API.
const (
	ResourceDeployment  = "deployment"
	ResourceStatefulSet = "statefulset"
	ResourceDaemonSet   = "daemonset"
	ResourceJob         = "job"
	ResourcePod         = "pod"
	ResourceNamespace   = "namespace"
)

// Resources are the resource types the API answers, with their short names.
var Resources = map[string]string{
	"deployment": ResourceDeployment, "deploy": ResourceDeployment, "deployments": ResourceDeployment,
	"statefulset": ResourceStatefulSet, "sts": ResourceStatefulSet, "statefulsets": ResourceStatefulSet,
	"daemonset": ResourceDaemonSet, "ds": ResourceDaemonSet, "daemonsets": ResourceDaemonSet,
	"job": ResourceJob, "jobs": ResourceJob,
	"pod": ResourcePod, "po": ResourcePod, "pods": ResourcePod,
	"namespace": ResourceNamespace, "ns": ResourceNamespace, "namespaces": ResourceNamespace,
}

// owner returns the name of the resource of type kind that pod belongs to, or "".
// A Deployment is found through its ReplicaSet's name: <deployment>-<pod-template-hash>.
func owner(pod *corev1.Pod, kind string) string {
	switch kind {
	case ResourcePod:
		return pod.Name
	case ResourceNamespace:
		return pod.Namespace
	}
	for _, ref := range pod.OwnerReferences {
		switch {
		case kind == ResourceDeployment && ref.Kind == "ReplicaSet":
			hash := pod.Labels["pod-template-hash"]
			if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && hash != "" {
				return name
			}
		case kind == ResourceStatefulSet && ref.Kind == "StatefulSet",
			kind == ResourceDaemonSet && ref.Kind == "DaemonSet",
			kind == ResourceJob && ref.Kind == "Job":
			return ref.Name
		}
	}
	return ""
}

// Query is one stats question.
type Query struct {
	Resource  string // one of the Resource constants
	Namespace string // "" for every namespace
	Name      string // "" for every resource
	Window    time.Duration
	// From, when set, counts only the inbound responses the resources gave to the pods of
	// From. To, when set, measures the resources' outbound responses from the pods of To
	// instead of their inbound ones. Pods are told apart by their identity (namespace and
	// ServiceAccount), as the proxies record it; TCP figures are then not measured.
	From, To *Ref
}

// Ref names resources: every resource of type Resource in Namespace ("" for every
// namespace), or the one called Name.
type Ref struct {
	Resource  string
	Namespace string
	Name      string
}

// peerIdentity is the "namespace/serviceaccount" of a proxy identity, "" when it is none.
func peerIdentity(spiffeID string) string {
	id, err := identity.ParseSpiffeID(spiffeID)
	if err != nil {
		return ""
	}
	return id.Namespace + "/" + id.ServiceAccount
}

// podIdentity is the "namespace/serviceaccount" of a pod.
func podIdentity(pod *corev1.Pod) string {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return pod.Namespace + "/" + sa
}

// identitiesOf returns the identities of the meshed pods of ref.
func (s *Service) identitiesOf(ref *Ref) (map[string]bool, error) {
	pods, err := s.listPods(ref.Namespace)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, pod := range pods {
		if name := owner(pod, ref.Resource); name != "" && (ref.Name == "" || name == ref.Name) && Meshed(pod) {
			ids[podIdentity(pod)] = true
		}
	}
	return ids, nil
}

func (s *Service) listPods(namespace string) ([]*corev1.Pod, error) {
	if namespace == "" {
		return s.pods.List(labels.Everything())
	}
	return s.pods.Pods(namespace).List(labels.Everything())
}

// sliceOf is the slice of traffic q measures (nil: every inbound response).
func (s *Service) sliceOf(q Query) (slice, error) {
	var ref *Ref
	outbound := false
	switch {
	case q.From != nil && q.To != nil:
		return nil, errors.New("give from or to, not both")
	case q.From != nil:
		ref = q.From
	case q.To != nil:
		ref, outbound = q.To, true
	default:
		return nil, nil
	}
	ids, err := s.identitiesOf(ref)
	if err != nil {
		return nil, err
	}
	return peers(outbound, func(peer string) bool { return ids[peerIdentity(peer)] }), nil
}

// source returns what answers a query for the pods of namespace over window at now: the
// scraped snapshots, or Prometheus.
func (s *Service) source(ctx context.Context, namespace string, window time.Duration, now time.Time) (windowSource, error) {
	if s.prom == nil {
		return s.store, nil
	}
	return s.prom.fetch(ctx, namespace, window, now)
}

// Stat answers q from the pod cache and the scraped snapshots (or Prometheus).
func (s *Service) Stat(q Query) ([]Row, error) { return s.StatContext(context.Background(), q) }

// StatContext is Stat with a context for the Prometheus queries.
func (s *Service) StatContext(ctx context.Context, q Query) ([]Row, error) {
	pods, err := s.listPods(q.Namespace)
	if err != nil {
		return nil, err
	}
	sl, err := s.sliceOf(q)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	src, err := s.source(ctx, q.Namespace, q.Window, now)
	if err != nil {
		return nil, err
	}
	type group struct {
		row Row
		w   windowStats
	}
	groups := map[podKey]*group{}
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		name := owner(pod, q.Resource)
		if name == "" || (q.Name != "" && name != q.Name) {
			continue
		}
		ns := pod.Namespace
		if q.Resource == ResourceNamespace {
			ns = ""
		}
		k := podKey{ns, name}
		g := groups[k]
		if g == nil {
			g = &group{row: Row{Namespace: ns, Resource: q.Resource, Name: name}, w: windowStats{buckets: map[float64]float64{}}}
			groups[k] = g
		}
		g.row.TotalPods++
		if Meshed(pod) {
			g.row.MeshedPods++
			g.w.add(src.window(podKey{pod.Namespace, pod.Name}, now, q.Window, sl))
		}
	}
	rows := make([]Row, 0, len(groups))
	for _, g := range groups {
		g.row.fill(g.w)
		rows = append(rows, g.row)
	}
	sortRows(rows)
	return rows, nil
}
