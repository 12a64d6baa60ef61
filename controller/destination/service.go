package destination

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// Defaults of the service.
const (
	DefaultControlPlaneNamespace = "lightmesh"
	DefaultClusterDomain         = "cluster.local"
)

// Options configure a Service.
type Options struct {
	// Informers are the started (or to be started) caches. Required.
	Informers *Informers
	// ControlPlaneNamespace is this control plane's namespace; pods labelled with another
	// get no identity. DefaultControlPlaneNamespace when empty.
	ControlPlaneNamespace string
	// TrustDomain of endpoint identities; meshid.DefaultTrustDomain when empty.
	TrustDomain string
	// ClusterDomain of service names; DefaultClusterDomain when empty.
	ClusterDomain string
	// Logger receives the logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Policy is the translated policy model that GetOutboundPolicy and GetInboundPolicy
	// stream (controller/policy.Watcher); nil streams the empty policy.
	Policy PolicySource
	// DNSServers (host:port) resolve ExternalName services; when empty, the servers of
	// ResolvConf (DefaultResolvConf when empty).
	DNSServers []string
	ResolvConf string
	// After waits (the ExternalName re-resolution); nil means time.After.
	After func(time.Duration) <-chan time.Time
}

// Service implements destinationv1.DestinationServer. Create it with New.
type Service struct {
	destinationv1.UnimplementedDestinationServer

	opts     Options
	log      *slog.Logger
	resolver resolver

	// deps maps what states depend on to the watches and policy subscribers computed from it.
	deps  *depIndex
	queue *workQueue

	watchMu sync.Mutex
	watches map[authority]*watch

	subscribers prometheus.Gauge
	watchCount  prometheus.Gauge
	updates     *prometheus.CounterVec
}

// New returns the service and registers its informer handler.
func New(opts Options) (*Service, error) {
	if opts.Informers == nil {
		return nil, errors.New("destination: no informers given")
	}
	if opts.ControlPlaneNamespace == "" {
		opts.ControlPlaneNamespace = DefaultControlPlaneNamespace
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = meshid.DefaultTrustDomain
	}
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = DefaultClusterDomain
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.After == nil {
		opts.After = time.After
	}
	servers, err := dnsServers(opts.DNSServers, opts.ResolvConf)
	if err != nil {
		opts.Logger.Warn("ExternalName services will have no endpoints", "error", err)
	}
	s := &Service{
		opts: opts,
		log:  opts.Logger,
		resolver: resolver{kube: opts.Informers, controlPlane: opts.ControlPlaneNamespace,
			trustDomain: opts.TrustDomain, clusterDomain: opts.ClusterDomain},
		deps:    newDepIndex(),
		watches: map[authority]*watch{},
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "destination_subscribers", Help: "Open streams (Get and policy).",
		}),
		watchCount: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "destination_watches", Help: "Authorities watched by Get streams (their states are computed once for all their streams).",
		}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "destination_updates_total", Help: "Updates sent, by kind (add, remove, no_endpoints).",
		}, []string{"kind"}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.subscribers, s.watchCount, s.updates} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register destination metrics: %w", err)
			}
		}
	}
	s.queue = newWorkQueue(s.refresh)
	s.resolver.external = &externalNames{
		servers: servers, after: opts.After, log: opts.Logger,
		notify: func(name string) { s.deps.fire(depKey{kind: depExternal, name: name}) },
		ctx:    context.Background(), names: map[string]*externalName{},
	}
	if err := opts.Informers.onEvent(func(keys []depKey) { s.deps.fire(keys...) }); err != nil {
		return nil, err
	}
	if opts.Policy != nil {
		opts.Policy.OnChange(func() { s.deps.fire(depKey{kind: depPolicy}) })
	}
	return s, nil
}

// Get streams the endpoints of req's authority until the client goes away.
func (s *Service) Get(req *destinationv1.GetDestination, stream destinationv1.Destination_GetServer) error {
	log := s.log.With("authority", req.GetPath(), "client", clientIdentity(stream.Context()))
	log.Debug("subscribed")
	err := s.Subscribe(stream.Context(), req.GetPath(), stream.Send)
	log.Debug("unsubscribed", "error", err)
	return err
}

// Subscribe sends the state of path with send until ctx ends or send fails: the full set
// first, then the differences. The state is computed once per change for all the streams of
// the authority; send is called from this goroutine only, and while it blocks, the changes
// are coalesced (the next send diffs the newest state against the last one sent).
func (s *Service) Subscribe(ctx context.Context, path string, send func(*destinationv1.Update) error) error {
	a, known, err := parseAuthority(path, s.opts.ClusterDomain)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if !known {
		if err := s.send(send, noEndpoints(false, "not a service of this cluster")); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	sub := newSubscriber()
	w, leave := s.join(a, sub)
	defer leave()
	var last *state
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.dirty:
		}
		cur := w.cur.Load()
		if cur == nil || cur == last {
			continue
		}
		for _, u := range diff(last, cur) {
			if err := s.send(send, u); err != nil {
				return err
			}
		}
		last = cur
	}
}

func (s *Service) send(send func(*destinationv1.Update) error, u *destinationv1.Update) error {
	kind := "add"
	switch u.Update.(type) {
	case *destinationv1.Update_Remove:
		kind = "remove"
	case *destinationv1.Update_NoEndpoints:
		kind = "no_endpoints"
	}
	s.updates.WithLabelValues(kind).Inc()
	return send(u)
}

// diff returns the updates that turn last (nil: nothing sent yet) into cur.
func diff(last, cur *state) []*destinationv1.Update {
	if last == nil {
		if len(cur.endpoints) == 0 {
			return []*destinationv1.Update{noEndpoints(cur.exists, cur.note)}
		}
		return []*destinationv1.Update{add(cur.endpoints, nil)}
	}
	var updates []*destinationv1.Update
	var removed []*destinationv1.TcpAddress
	for addr, old := range last.endpoints {
		if _, ok := cur.endpoints[addr]; !ok {
			removed = append(removed, old.GetAddr())
		}
	}
	if len(removed) > 0 {
		sortAddrs(removed)
		updates = append(updates, &destinationv1.Update{Update: &destinationv1.Update_Remove{Remove: &destinationv1.AddrSet{Addrs: removed}}})
	}
	if len(cur.endpoints) == 0 {
		if len(last.endpoints) > 0 || last.exists != cur.exists {
			updates = append(updates, noEndpoints(cur.exists, cur.note))
		}
		return updates
	}
	if u := add(cur.endpoints, last.endpoints); u != nil {
		updates = append(updates, u)
	}
	return updates
}

// add returns an Add of the endpoints of cur that are new or changed since last (all when
// last is nil), or nil when there are none.
func add(cur, last map[netip.AddrPort]*destinationv1.WeightedAddr) *destinationv1.Update {
	var addrs []*destinationv1.WeightedAddr
	for addr, wa := range cur {
		if old, ok := last[addr]; ok && (old == wa || proto.Equal(old, wa)) {
			continue
		}
		addrs = append(addrs, wa)
	}
	if len(addrs) == 0 {
		return nil
	}
	sortWeighted(addrs)
	return &destinationv1.Update{Update: &destinationv1.Update_Add{Add: &destinationv1.WeightedAddrSet{Addrs: addrs}}}
}

func noEndpoints(exists bool, note string) *destinationv1.Update {
	return &destinationv1.Update{Update: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: exists, Note: note}}}
}

func addrKey(a *destinationv1.TcpAddress) netip.AddrPort {
	ip, _ := netip.ParseAddr(a.GetIp())
	return netip.AddrPortFrom(ip, uint16(a.GetPort()))
}

func sortAddrs(a []*destinationv1.TcpAddress) {
	sortFunc(a, func(x *destinationv1.TcpAddress) netip.AddrPort { return addrKey(x) })
}

func sortWeighted(a []*destinationv1.WeightedAddr) {
	sortFunc(a, func(x *destinationv1.WeightedAddr) netip.AddrPort { return addrKey(x.GetAddr()) })
}

func sortFunc[T any](a []T, key func(T) netip.AddrPort) {
	slices.SortFunc(a, func(x, y T) int { return key(x).Compare(key(y)) })
}

// clientIdentity names the proxy at the other end of a stream, from its client certificate.
func clientIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return ""
	}
	id, err := meshid.SpiffeIDFromCertificate(info.State.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return id.String()
}

// RequireClientIdentity makes base require a client certificate, a workload certificate of
// trustDomain that chains to the trust anchors anchors() returns at handshake time.
func RequireClientIdentity(base *tls.Config, anchors func() []*x509.Certificate, trustDomain string, clock meshid.Clock) *tls.Config {
	c := base.Clone()
	c.ClientAuth = tls.RequireAnyClientCert
	c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		v, err := meshid.NewVerifier(anchors(), trustDomain, clock)
		if err != nil {
			return err
		}
		_, err = v.VerifyRaw(raw, x509.ExtKeyUsageClientAuth)
		return err
	}
	return c
}
