// Package destination is the proxy's client of the controller's destination service: it
// implements discovery.Resolver from Get streams and discovery.PolicySource from
// GetOutboundPolicy and GetInboundPolicy streams.
//
// The first Resolve of a key (an authority, or an original destination address) opens a
// stream for it and waits, at most InitialTimeout after it opened, for the first answer
// (later lookups without an answer pass through at once); the stream then stays open and
// updates the endpoint set in place. When a stream fails, the client keeps serving the last
// known state and opens it again with backoff (MinBackoff doubling to
// MaxBackoff, each wait drawn between half and all of that), or as soon as the connection
// is ready again (the controller is back), whichever comes first. The connection is mTLS with the
// proxy's own workload certificate (the controller authenticates streams by it); until the
// proxy has one, attempts wait.
//
// A key not resolved for IdleTimeout has its stream closed (not while the destination
// service is away: the last state of every key is kept then); at most MaxWatches keys are
// watched (beyond, new keys pass through).
//
// A service the controller does not know (NoEndpoints{exists: false}), or no answer yet, is
// not found: the proxy forwards to the original destination (passthrough). A service that
// exists without endpoints is found with no endpoints: the proxy answers 503 or closes.
//
// Outbound policy follows the same rules, per authority: the first Outbound call opens its
// stream and waits for the first answer (at most InitialTimeout), idle streams are closed,
// failed streams reopened with backoff, and the last policy is kept while the controller is
// away. The inbound policy of the proxy's own pod (PodNamespace, PodName) has one stream,
// opened by New and never closed while the client lives; until its first answer Inbound
// returns nil (the defaults). Policy messages carry internal/policy's JSON form; a message
// in another format is ignored (the last state is kept).
//
// The client knows whether it is connected to the destination service: connected while at
// least one of its streams is open and has answered; disconnected from when the last such
// stream ended (or, before any answer, from the first failed attempt) until a stream answers
// again. Status and ReadyDetail report it, and with Options.Registerer the metrics
// destination_connected (1 or 0), destination_reconnects_total (streams answering again after
// one of theirs ended) and destination_last_update_age_seconds (since the last message of any
// stream; absent before the first).
//
// The client never imports client-go: the proxy talks to the controller only.
package destination

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/internal/controlconn"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
)

// Defaults of the client.
const (
	DefaultServerName     = "destination.lightmesh.svc.cluster.local"
	DefaultInitialTimeout = 2 * time.Second
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultMaxWatches     = 4096
	DefaultIdleTimeout    = 10 * time.Minute
	maxMessageBytes       = 4 << 20
)

// Options configure a Client.
type Options struct {
	// Addr is the destination service, host:port. Required unless Client is given.
	Addr string
	// ServerName is the DNS name of the service's certificate; DefaultServerName when empty.
	ServerName string
	// Source gives the proxy's certificate and the trust anchors. Required unless Client is given.
	Source meshtls.Source
	// Client is used instead of dialing Addr (tests).
	Client destinationv1.DestinationClient
	// Conn, with Client, is the connection Client runs on (tests): watched, as the one New
	// dials is, so that streams waiting out their backoff are opened again as soon as it is
	// ready.
	Conn *grpc.ClientConn
	// ContextToken is sent with every Get (the proxy's namespace and pod, for the controller's logs).
	ContextToken string
	// InitialTimeout bounds the wait for a key's first answer; DefaultInitialTimeout when zero.
	InitialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the waits between attempts.
	MinBackoff, MaxBackoff time.Duration
	// MaxWatches bounds the keys watched; beyond it, new keys pass through. DefaultMaxWatches when zero.
	MaxWatches int
	// Clock tells the time; nil means the system clock.
	Clock meshid.Clock
	// IdleTimeout: a key not resolved for this long has its stream closed (it is opened
	// again on next use); DefaultIdleTimeout when zero.
	IdleTimeout time.Duration
	// After waits; nil means time.After.
	After func(time.Duration) <-chan time.Time
	// Jitter returns a number in [0, 1); nil means math/rand/v2.
	Jitter func() float64
	// Logger receives the logs; nil means slog.Default().
	Logger *slog.Logger
	// PodNamespace and PodName name the proxy's pod: when both are set, New opens the
	// stream of its inbound policy.
	PodNamespace, PodName string
	// Gateway (with PodNamespace and PodName) also opens the stream of the pod's gateway
	// policy: the proxy runs as an ingress gateway.
	Gateway bool
	// Registerer receives the connection metrics (destination_connected,
	// destination_reconnects_total, destination_last_update_age_seconds); nil registers none.
	Registerer prometheus.Registerer
}

// PolicyFormat is the only policy message format the client reads.
const PolicyFormat = "lightmesh.policy.v1+json"

// Client resolves through the destination service. Create it with New.
type Client struct {
	opts Options
	ctx  context.Context
	log  *slog.Logger
	api  destinationv1.DestinationClient
	conn *grpc.ClientConn

	mu      sync.Mutex
	watches map[string]*watch
	// inbound is the stream of the pod's inbound policy; nil without PodNamespace/PodName.
	inbound *watch
	// gateway is the stream of the pod's gateway policy; nil unless Options.Gateway.
	gateway *watch

	link link

	// readiness signals each time the connection becomes ready: streams waiting out their
	// backoff then try at once. Nil without a connection to watch.
	readiness *controlconn.Readiness
}

// link is what the client knows of its connection to the destination service.
type link struct {
	mu sync.Mutex
	// answered counts the streams open now that received a message.
	answered int
	// ever: some stream answered once.
	ever bool
	// down is when the client lost its last answered stream (or, before any answer, when
	// the first attempt failed); zero while connected or before any failure.
	down       time.Time
	lastUpdate time.Time
	reconnects uint64
}

// Status is the client's connection to the destination service.
type Status struct {
	// Connected: at least one stream is open and has answered.
	Connected bool
	// DisconnectedSince is when the last answered stream ended (or, before any answer, when
	// the first attempt failed); zero while connected.
	DisconnectedSince time.Time
	// EverConnected: some stream answered once (there is a last known state to serve).
	EverConnected bool
	// LastUpdate is when the last message of any stream arrived; zero before the first.
	LastUpdate time.Time
	// Reconnects counts the streams that answered again after one of theirs ended.
	Reconnects uint64
}

// view is one state of a key: exists=false is unknown (passthrough). outbound and inbound
// are the policies of the policy streams.
type view struct {
	exists   bool
	dst      *discovery.Destination
	outbound *policy.OutboundPolicy
	inbound  *policy.InboundPolicy
	gateway  *policy.GatewayPolicy
}

// watchKind is what a watch streams.
type watchKind uint8

const (
	watchEndpoints watchKind = iota
	watchOutbound
	watchInbound
	watchGateway
)

// outboundPrefix keys outbound policy watches apart from endpoint watches.
const outboundPrefix = "policy "

type watch struct {
	// key is the map key; target is what the stream asks for (the authority, or the pod as
	// namespace/name).
	key, target string
	kind        watchKind
	// deadline ends the wait for the first answer: later lookups without one pass through
	// at once instead of each waiting.
	deadline time.Time
	// lastUsed is when Resolve last asked (Unix nanoseconds); cancel closes the stream.
	lastUsed atomic.Int64
	// open: the current stream has answered; served: one of its streams answered before.
	// Guarded by Client.link.mu.
	open, served bool
	cancel       context.CancelFunc
	ctx          context.Context
	ready        chan struct{}
	once         sync.Once
	view         atomic.Pointer[view]
}

// New returns a client whose streams live until ctx ends.
func New(ctx context.Context, opts Options) (*Client, error) {
	if opts.ServerName == "" {
		opts.ServerName = DefaultServerName
	}
	if opts.InitialTimeout == 0 {
		opts.InitialTimeout = DefaultInitialTimeout
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxWatches == 0 {
		opts.MaxWatches = DefaultMaxWatches
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Clock == nil {
		opts.Clock = meshid.SystemClock{}
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{opts: opts, ctx: ctx, log: opts.Logger, api: opts.Client, conn: opts.Conn, watches: map[string]*watch{}}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(linkCollector{c}); err != nil {
			return nil, fmt.Errorf("register the destination client's metrics: %w", err)
		}
	}
	if c.api == nil {
		if opts.Addr == "" || opts.Source == nil {
			return nil, errors.New("destination client: give the service's address and the proxy's certificate source")
		}
		creds := credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS12,
			ServerName: opts.ServerName,
			// RootCAs is read per handshake from the source (anchors may rotate).
			InsecureSkipVerify: true, //nolint:gosec // verified below against the source's trust anchors
			VerifyConnection: func(cs tls.ConnectionState) error {
				roots := opts.Source.TrustAnchors()
				if roots == nil || len(cs.PeerCertificates) == 0 {
					return errors.New("no trust anchors yet, or no server certificate")
				}
				inter := x509Pool(cs)
				_, err := cs.PeerCertificates[0].Verify(x509VerifyOptions(roots, inter, opts.ServerName))
				return err
			},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert := opts.Source.Certificate(); cert != nil {
					return cert, nil
				}
				return nil, meshtls.ErrNoCertificate
			},
		})
		conn, err := grpc.NewClient(opts.Addr, append(controlconn.DialOptions(), grpc.WithTransportCredentials(creds),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes)))...)
		if err != nil {
			return nil, fmt.Errorf("destination client for %s: %w", opts.Addr, err)
		}
		c.conn, c.api = conn, destinationv1.NewDestinationClient(conn)
		go func() { <-ctx.Done(); _ = conn.Close() }()
	}
	if c.conn != nil {
		c.readiness = controlconn.Watch(ctx, c.conn)
	}
	if opts.PodNamespace != "" && opts.PodName != "" {
		w := &watch{key: "inbound", target: opts.PodNamespace + "/" + opts.PodName, kind: watchInbound, ready: make(chan struct{})}
		w.ctx, w.cancel = context.WithCancel(ctx)
		c.inbound = w
		go c.run(w)
		if opts.Gateway {
			g := &watch{key: "gateway", target: opts.PodNamespace + "/" + opts.PodName, kind: watchGateway, ready: make(chan struct{})}
			g.ctx, g.cancel = context.WithCancel(ctx)
			c.gateway = g
			go c.run(g)
		}
	}
	go c.evictLoop()
	return c, nil
}

// Outbound returns the last policy received for authority; the first call opens its
// stream and waits (at most InitialTimeout, or until ctx ends) for the first answer. nil
// means no policy (or no answer yet).
func (c *Client) Outbound(ctx context.Context, authority string) (*policy.OutboundPolicy, error) {
	authority = strings.ToLower(authority)
	if _, port, err := net.SplitHostPort(authority); err != nil || port == "" {
		return nil, nil // the service would refuse it: no stream, no wait
	}
	if v := c.lookupKind(ctx, watchOutbound, outboundPrefix+authority, authority); v != nil {
		return v.outbound, nil
	}
	return nil, nil
}

// Inbound returns the last inbound policy received for the proxy's pod; nil (the defaults)
// before the first answer or without PodNamespace and PodName.
func (c *Client) Inbound() *policy.InboundPolicy {
	if c.inbound == nil {
		return nil
	}
	if v := c.inbound.view.Load(); v != nil {
		return v.inbound
	}
	return nil
}

// Gateway returns the last gateway policy received for the proxy's pod; nil before the first
// answer or without Options.Gateway.
func (c *Client) Gateway() *policy.GatewayPolicy {
	if c.gateway == nil {
		return nil
	}
	if v := c.gateway.view.Load(); v != nil {
		return v.gateway
	}
	return nil
}

// InboundReady is closed when the first inbound policy arrived (never without
// PodNamespace and PodName).
func (c *Client) InboundReady() <-chan struct{} {
	if c.inbound == nil {
		return nil
	}
	return c.inbound.ready
}

// Resolve looks up the authority (when given and known), then the original destination.
func (c *Client) Resolve(ctx context.Context, target discovery.Target) (*discovery.Destination, bool, error) {
	if target.Authority != "" {
		if v := c.lookup(ctx, target.Authority); v != nil && v.exists {
			return v.dst, true, nil
		}
	}
	if target.Addr.IsValid() {
		if v := c.lookup(ctx, target.Addr.String()); v != nil && v.exists {
			return v.dst, true, nil
		}
	}
	return nil, false, nil
}

// lookup returns the view of key, starting its stream on first use; nil without an answer.
func (c *Client) lookup(ctx context.Context, key string) *view {
	return c.lookupKind(ctx, watchEndpoints, key, key)
}

// lookupKind is lookup for a watch of kind on target, kept under key.
func (c *Client) lookupKind(ctx context.Context, kind watchKind, key, target string) *view {
	c.mu.Lock()
	w, ok := c.watches[key]
	if !ok {
		if len(c.watches) >= c.opts.MaxWatches {
			c.mu.Unlock()
			c.log.Warn("too many destinations watched: passing through", "key", key, "max", c.opts.MaxWatches)
			return nil
		}
		w = &watch{key: key, target: target, kind: kind, ready: make(chan struct{}), deadline: c.opts.Clock.Now().Add(c.opts.InitialTimeout)}
		w.ctx, w.cancel = context.WithCancel(c.ctx)
		c.watches[key] = w
		go c.run(w)
	}
	c.mu.Unlock()
	w.lastUsed.Store(c.opts.Clock.Now().UnixNano())
	if v := w.view.Load(); v != nil {
		return v
	}
	wait := w.deadline.Sub(c.opts.Clock.Now())
	if wait <= 0 {
		return nil
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
	case <-c.ctx.Done():
	case <-c.opts.After(wait):
		c.log.Info("no answer from the destination service yet: passing through", "key", key)
	}
	return w.view.Load()
}

// evictLoop closes idle streams every half IdleTimeout until the client's context ends.
func (c *Client) evictLoop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.opts.After(c.opts.IdleTimeout / 2):
			c.evictIdle()
		}
	}
}

// evictIdle closes the streams of keys not resolved for IdleTimeout. While the destination
// service is away it evicts nothing: an evicted key's last state would be lost, and its next
// use would wait for an answer that cannot come, then pass through.
func (c *Client) evictIdle() {
	if !c.Status().Connected {
		return
	}
	cutoff := c.opts.Clock.Now().Add(-c.opts.IdleTimeout).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, w := range c.watches {
		if w.lastUsed.Load() < cutoff {
			w.cancel()
			delete(c.watches, key)
		}
	}
}

// run keeps w's stream open until the client's context ends or w is evicted.
func (c *Client) run(w *watch) {
	for attempt := 0; ; attempt++ {
		if c.opts.Source != nil && !c.opts.Source.Ready() {
			// The controller authenticates streams by the proxy's certificate: wait for it.
			select {
			case <-w.ctx.Done():
				return
			case <-c.opts.After(c.opts.MinBackoff):
			}
			attempt = -1
			continue
		}
		var got bool
		var err error
		switch w.kind {
		case watchOutbound:
			got, err = c.streamOutbound(w)
		case watchInbound:
			got, err = c.streamInbound(w)
		case watchGateway:
			got, err = c.streamGateway(w)
		default:
			got, err = c.stream(w)
		}
		// Taken before the stream's end is handled: a connection that becomes ready from
		// now on wakes the backoff below.
		ready := c.readiness.Next()
		c.ended(w)
		if w.ctx.Err() != nil {
			return
		}
		if got {
			attempt = 0
		}
		if status.Code(err) == codes.PermissionDenied {
			c.log.Warn("the destination service refused the stream; keeping the last known state", "key", w.key, "error", err)
		} else {
			c.log.Info("destination stream ended; keeping the last known state", "key", w.key, "error", err)
		}
		select {
		case <-w.ctx.Done():
			return
		case <-c.opts.After(c.backoff(attempt)):
		case <-ready:
			// The connection is ready again: no need to wait out the backoff.
		}
	}
}

func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MinBackoff
	for i := 0; i < n && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	return d/2 + time.Duration(c.opts.Jitter()*float64(d/2))
}

// stream runs one Get stream; got reports whether it received anything.
func (c *Client) stream(w *watch) (got bool, err error) {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	stream, err := c.api.Get(ctx, &destinationv1.GetDestination{Path: w.key, ContextToken: c.opts.ContextToken})
	if err != nil {
		return false, err
	}
	var set map[netip.AddrPort]discovery.Endpoint
	exists := false
	for {
		u, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the server closed the stream")
			}
			return got, err
		}
		c.received(w)
		if !got {
			set = map[netip.AddrPort]discovery.Endpoint{} // a new stream starts with the full set
		}
		got = true
		switch u := u.Update.(type) {
		case *destinationv1.Update_Add:
			exists = true
			for _, wa := range u.Add.GetAddrs() {
				if ep, ok := c.endpoint(w.key, wa); ok {
					set[ep.Addr] = ep
				}
			}
		case *destinationv1.Update_Remove:
			for _, a := range u.Remove.GetAddrs() {
				if addr, ok := addrPort(a); ok {
					delete(set, addr)
				}
			}
		case *destinationv1.Update_NoEndpoints:
			exists = u.NoEndpoints.GetExists()
			clear(set)
		default:
			continue
		}
		w.view.Store(newView(w.key, exists, set))
		w.once.Do(func() { close(w.ready) })
	}
}

// streamOutbound runs one GetOutboundPolicy stream; got reports whether it received a
// policy.
func (c *Client) streamOutbound(w *watch) (got bool, err error) {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	stream, err := c.api.GetOutboundPolicy(ctx, &destinationv1.GetDestination{Path: w.target, ContextToken: c.opts.ContextToken})
	if err != nil {
		return false, err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return got, streamEnded(err)
		}
		c.received(w)
		var p policy.OutboundPolicy
		if !c.decode(w.key, m.GetFormat(), m.GetPolicy(), &p) {
			continue
		}
		got = true
		w.view.Store(&view{exists: true, outbound: &p})
		w.once.Do(func() { close(w.ready) })
	}
}

// streamInbound runs one GetInboundPolicy stream; got reports whether it received a policy.
func (c *Client) streamInbound(w *watch) (got bool, err error) {
	return streamPodPolicy(c, w, func(ctx context.Context, req *destinationv1.GetInboundPolicy) (func() (policyMessage, error), error) {
		stream, err := c.api.GetInboundPolicy(ctx, req)
		return func() (policyMessage, error) { return stream.Recv() }, err
	}, func(p *policy.InboundPolicy) *view { return &view{exists: true, inbound: p} })
}

// streamGateway runs one GetGatewayPolicy stream; got reports whether it received a policy.
func (c *Client) streamGateway(w *watch) (got bool, err error) {
	return streamPodPolicy(c, w, func(ctx context.Context, req *destinationv1.GetInboundPolicy) (func() (policyMessage, error), error) {
		stream, err := c.api.GetGatewayPolicy(ctx, req)
		return func() (policyMessage, error) { return stream.Recv() }, err
	}, func(p *policy.GatewayPolicy) *view { return &view{exists: true, gateway: p} })
}

// policyMessage is a policy stream's message: its format and the policy's JSON.
type policyMessage interface {
	GetFormat() string
	GetPolicy() []byte
}

// streamPodPolicy runs one stream of the pod's policy of type T, opened by open, storing
// each policy received in w's view (made by toView); got reports whether one came.
func streamPodPolicy[T any](c *Client, w *watch, open func(context.Context, *destinationv1.GetInboundPolicy) (func() (policyMessage, error), error), toView func(*T) *view) (got bool, err error) {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	recv, err := open(ctx, &destinationv1.GetInboundPolicy{
		Namespace: c.opts.PodNamespace, Pod: c.opts.PodName, ContextToken: c.opts.ContextToken,
	})
	if err != nil {
		return false, err
	}
	for {
		m, err := recv()
		if err != nil {
			return got, streamEnded(err)
		}
		c.received(w)
		p := new(T)
		if !c.decode(w.key, m.GetFormat(), m.GetPolicy(), p) {
			continue
		}
		got = true
		w.view.Store(toView(p))
		w.once.Do(func() { close(w.ready) })
	}
}

// decode reads a policy message into v; false (logged) for another format or bad JSON.
func (c *Client) decode(key, format string, data []byte, v any) bool {
	if format != PolicyFormat {
		c.log.Warn("the destination service sent a policy in a format this proxy does not read; keeping the last policy (upgrade the proxy)", "key", key, "format", format)
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		c.log.Warn("the destination service sent a policy this proxy cannot decode; keeping the last policy", "key", key, "error", err)
		return false
	}
	return true
}

func streamEnded(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("the server closed the stream")
	}
	return err
}

func newView(key string, exists bool, set map[netip.AddrPort]discovery.Endpoint) *view {
	dst := &discovery.Destination{Name: key, Endpoints: make([]discovery.Endpoint, 0, len(set))}
	for _, ep := range set {
		dst.Endpoints = append(dst.Endpoints, ep)
	}
	slices.SortFunc(dst.Endpoints, func(a, b discovery.Endpoint) int { return a.Addr.Compare(b.Addr) })
	return &view{exists: exists, dst: dst}
}

func addrPort(a *destinationv1.TcpAddress) (netip.AddrPort, bool) {
	ip, err := netip.ParseAddr(a.GetIp())
	if err != nil || a.GetPort() == 0 || a.GetPort() > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.GetPort())), true
}

func (c *Client) endpoint(key string, wa *destinationv1.WeightedAddr) (discovery.Endpoint, bool) {
	addr, ok := addrPort(wa.GetAddr())
	if !ok {
		c.log.Warn("the destination service sent an invalid address; ignoring it", "key", key, "addr", wa.GetAddr().String())
		return discovery.Endpoint{}, false
	}
	ep := discovery.Endpoint{Addr: addr, Protocol: protocolHint(wa.GetProtocolHint()), AppProtocol: wa.GetAppProtocol()}
	if labels := wa.GetLabels(); len(labels) > 0 {
		ep.Labels = labels
	}
	if id := wa.GetTlsIdentity(); id != "" {
		var err error
		if ep.Identity, err = meshid.ParseSpiffeID(id); err != nil {
			c.log.Warn("the destination service sent an invalid identity; ignoring the endpoint", "key", key, "addr", addr.String(), "error", err)
			return discovery.Endpoint{}, false
		}
	}
	return ep, true
}

// protocolHint maps the service's hint to discovery's; unknown values mean no hint.
func protocolHint(h destinationv1.ProtocolHint) discovery.ProtocolHint {
	switch h {
	case destinationv1.ProtocolHint_PROTOCOL_HINT_HTTP2:
		return discovery.ProtocolHTTP2
	case destinationv1.ProtocolHint_PROTOCOL_HINT_OPAQUE:
		return discovery.ProtocolOpaque
	}
	return discovery.ProtocolUnknown
}

var _ discovery.PolicySource = (*Client)(nil)

// received records a message of w's current stream.
func (c *Client) received(w *watch) {
	now := c.opts.Clock.Now()
	l := &c.link
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastUpdate = now
	if w.open {
		return
	}
	w.open = true
	l.answered++
	if w.served {
		l.reconnects++
	}
	w.served = true
	if !l.down.IsZero() || !l.ever {
		c.log.Info("connected to the destination service", "key", w.key)
	}
	l.ever, l.down = true, time.Time{}
}

// ended records the end of w's current stream (or a failed attempt to open it).
func (c *Client) ended(w *watch) {
	now := c.opts.Clock.Now()
	l := &c.link
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.open {
		w.open = false
		l.answered--
	}
	if w.ctx.Err() != nil {
		return // closed on purpose (idle, or the client ends)
	}
	if l.answered == 0 && l.down.IsZero() {
		l.down = now
		c.log.Warn("disconnected from the destination service; serving the last known state", "key", w.key)
	}
}

// Status reports the client's connection to the destination service.
func (c *Client) Status() Status {
	l := &c.link
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{Connected: l.answered > 0, DisconnectedSince: l.down, EverConnected: l.ever,
		LastUpdate: l.lastUpdate, Reconnects: l.reconnects}
}

// ReadyDetail is "" while connected, else what the proxy does without the destination
// service, for the admin server's /ready answer: "destination disconnected for 42s, serving
// last known state".
func (c *Client) ReadyDetail() string {
	st := c.Status()
	if st.Connected || st.DisconnectedSince.IsZero() {
		return ""
	}
	d := c.opts.Clock.Now().Sub(st.DisconnectedSince).Round(time.Second)
	if !st.EverConnected {
		return fmt.Sprintf("destination unreachable for %s, no state received yet: outbound traffic goes to its original destination", d)
	}
	return fmt.Sprintf("destination disconnected for %s, serving last known state", d)
}

var (
	connectedDesc = prometheus.NewDesc("destination_connected",
		"1 while a stream to the destination service is open and answered, else 0 (the proxy serves its last known state).", nil, nil)
	reconnectsDesc = prometheus.NewDesc("destination_reconnects_total",
		"Streams to the destination service that answered again after one of theirs ended.", nil, nil)
	lastUpdateAgeDesc = prometheus.NewDesc("destination_last_update_age_seconds",
		"Seconds since the last message from the destination service (absent before the first).", nil, nil)
)

// linkCollector exports the client's Status as metrics.
type linkCollector struct{ c *Client }

func (lc linkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- connectedDesc
	ch <- reconnectsDesc
	ch <- lastUpdateAgeDesc
}

func (lc linkCollector) Collect(ch chan<- prometheus.Metric) {
	st := lc.c.Status()
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(reconnectsDesc, prometheus.CounterValue, float64(st.Reconnects))
	if !st.LastUpdate.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastUpdateAgeDesc, prometheus.GaugeValue, lc.c.opts.Clock.Now().Sub(st.LastUpdate).Seconds())
	}
}
