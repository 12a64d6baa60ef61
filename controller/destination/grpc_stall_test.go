package destination

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	goruntime "runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// The numbers of TestStalledSubscriberOverGRPCDoesNotDelayOthers.
const (
	// stallEndpoints is the size of web's EndpointSlice: every change replaces all of its
	// addresses, so each change is a Remove and an Add of that many endpoints (~100 KiB).
	stallEndpoints = 400
	// apiEndpoints is the size of the other authority's slice.
	apiEndpoints = 50
	// stallRounds is the number of changes made while the stalled stream does not read.
	stallRounds = 40
	// stallWindow is the stalled client's HTTP/2 stream and connection window; setting it
	// also turns off the window growth (BDP estimation), so it stays this size.
	stallWindow = 64 << 10
	// stallP99 bounds the 99th percentile of the live clients' latency per change.
	stallP99 = time.Second
	// stallGoroutineSlack is how many goroutines may come and go (informer handlers, work
	// queue workers) besides the streams' own.
	stallGoroutineSlack = 10
)

const apiFQDN = "api.shop.svc.cluster.local:80"

// A Get stream whose client never reads fills its HTTP/2 window until the server's Send
// blocks; the other clients, on their own connections, of the same authority and of another
// one, still get every change within stallP99, the server's goroutines do not grow with the
// changes, and the stalled stream's resources go when its client cancels.
func TestStalledSubscriberOverGRPCDoesNotDelayOthers(t *testing.T) {
	objects := []runtime.Object{
		service("shop", "web", "10.96.0.5", servicePort("http", 80, intstr.FromString("http"))),
		service("shop", "api", "10.96.0.6", servicePort("http", 80, intstr.FromString("http"))),
		stallSlice("web", 0, 0, stallEndpoints), stallSlice("api", 8, 0, apiEndpoints),
	}
	for j := range stallEndpoints {
		objects = append(objects, pod("shop", fmt.Sprintf("web-%d", j), "web", "lightmesh"))
	}
	for j := range apiEndpoints {
		objects = append(objects, pod("shop", fmt.Sprintf("api-%d", j), "api", "lightmesh"))
	}
	e := newEnv(t, objects...)
	srv := serveTLS(t, e)
	id, _ := meshid.NewSpiffeID("cluster.local", "shop", "client")
	certs := []tls.Certificate{workloadCert(t, srv.issuer, id)}

	// Two live clients, each on a connection of its own (every dial is a new ClientConn).
	web := watchGenerations(t, srv.ctx, srv.dial(certs), webFQDN, stallEndpoints)
	api := watchGenerations(t, srv.ctx, srv.dial(certs), apiFQDN, apiEndpoints)
	web.await(t, 0)
	api.await(t, 0)
	baseline := goruntime.NumGoroutine()

	// The stalled client: its own connection with a fixed 64 KiB window; it reads the first
	// update and nothing more.
	stalled, received := dialLike(t, web.stream, certs)
	stallCtx, unstall := context.WithCancel(srv.ctx)
	defer unstall()
	stuck, err := stalled.Get(stallCtx, &destinationv1.GetDestination{Path: webFQDN})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stuck.Recv()
	if err != nil {
		t.Fatalf("the stalled client's first update: %v", err)
	}
	if n := len(first.GetAdd().GetAddrs()); n != stallEndpoints {
		t.Fatalf("the stalled client's first update has %d endpoints, want %d", n, stallEndpoints)
	}
	firstSize := proto.Size(first)
	withStalled := goruntime.NumGoroutine()
	webAuthority, _, err := parseAuthority(webFQDN, DefaultClusterDomain)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stalled stream to join web's watch", func() bool { return e.subscribersOf(webAuthority) == 2 })

	var webLatency, apiLatency []time.Duration
	maxGoroutines := 0
	var blockedAt, receivedAtBlock int64
	for gen := 1; gen <= stallRounds; gen++ {
		start := time.Now()
		e.update(stallSlice("web", 0, gen, stallEndpoints))
		apiStart := time.Now()
		e.update(stallSlice("api", 8, gen, apiEndpoints))
		webLatency = append(webLatency, web.await(t, gen).Sub(start))
		apiLatency = append(apiLatency, api.await(t, gen).Sub(apiStart))
		maxGoroutines = max(maxGoroutines, goruntime.NumGoroutine())
		if blockedAt == 0 && goroutinesWith(sendBlockedFrames...) > 0 {
			blockedAt, receivedAtBlock = int64(gen), received.Load()
		}
	}

	// The stalled stream's window is full: the server's Send for it is blocked on the
	// stream's flow control (grpc's per-stream write quota), and what crossed its connection
	// is the first update and at most one window, while the live client of the same
	// authority got the whole volume.
	eventually(t, "the server's Send to the stalled client to block on flow control", func() bool {
		return goroutinesWith(sendBlockedFrames...) == 1
	})
	stalledBytes := received.Load()
	beyondFirst := stalledBytes - int64(firstSize)
	t.Logf("stalled stream: first update %d B; its connection carried %d B in all (%d B beyond the first update, window %d B); "+
		"Send blocked from change %d on (%d B then); the live client of the same authority received %d B of updates after the first",
		firstSize, stalledBytes, beyondFirst, stallWindow, blockedAt, receivedAtBlock, web.bytesAfterFirst.Load())
	if blockedAt == 0 {
		t.Errorf("the server's Send to the stalled client never blocked during the %d changes", stallRounds)
	}
	if beyondFirst > stallWindow+16<<10 {
		t.Errorf("the stalled connection carried %d B beyond the first update, more than its %d B window allows: it is not stalled", beyondFirst, stallWindow)
	}
	if beyondFirst < stallWindow/2 {
		t.Errorf("the stalled connection carried only %d B beyond the first update: the server did not fill its %d B window", beyondFirst, stallWindow)
	}
	if v := web.bytesAfterFirst.Load(); v < 20*stallWindow {
		t.Errorf("the changes produced only %d B for web's streams, not enough to prove a %d B window full", v, stallWindow)
	}

	// The live clients saw every change (await fails on a skipped one), promptly.
	for _, l := range []struct {
		name string
		d    []time.Duration
	}{{"same authority", webLatency}, {"other authority", apiLatency}} {
		p50, p99, worst := percentiles(l.d)
		t.Logf("live client, %s: %d changes, latency p50 %s p99 %s max %s", l.name, len(l.d), p50, p99, worst)
		if p99 > stallP99 {
			t.Errorf("live client, %s: p99 latency %s, want under %s while a stream is stalled", l.name, p99, stallP99)
		}
	}

	// The server's goroutines stay bounded: the stalled stream costs its connection's and its
	// own few, not one per change it could not send.
	t.Logf("goroutines: %d with the live clients, %d with the stalled client too, at most %d during the %d changes",
		baseline, withStalled, maxGoroutines, stallRounds)
	if maxGoroutines > withStalled+stallGoroutineSlack {
		t.Errorf("goroutines grew from %d to %d during %d changes while a stream was stalled", withStalled, maxGoroutines, stallRounds)
	}

	// The stalled client cancels: its stream leaves the watch, the blocked Send returns and
	// its goroutines go; closing its connection brings the count back to the baseline.
	unstall()
	eventually(t, "the stalled stream to leave web's watch", func() bool { return e.subscribersOf(webAuthority) == 1 })
	eventually(t, "the blocked Send to return", func() bool {
		return goroutinesWith(sendBlockedFrames...) == 0 && goroutinesWith(subscribeFrame) == 2
	})
	if err := stalled.close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, fmt.Sprintf("the goroutines to come back to the baseline %d", baseline), func() bool {
		return goruntime.NumGoroutine() <= baseline+2
	})
	t.Logf("goroutines after the stalled client cancelled and closed: %d", goruntime.NumGoroutine())

	// The live streams are still live.
	e.update(stallSlice("web", 0, stallRounds+1, stallEndpoints))
	web.await(t, stallRounds+1)
}

// stallSlice is svc's EndpointSlice at generation gen: n endpoints (pods svc-0 ...) whose
// addresses are 10.(100+gen).(octet+j/256).(j%256), so every generation replaces them all.
func stallSlice(svc string, octet, gen, n int) *discoveryv1.EndpointSlice {
	eps := make([]ep, n)
	for j := range eps {
		eps[j] = ep{ip: fmt.Sprintf("10.%d.%d.%d", 100+gen, octet+j/256, j%256), pod: fmt.Sprintf("%s-%d", svc, j)}
	}
	return slice("shop", svc, svc+"-x", map[string]int32{"http": 8080}, eps...)
}

// generationOf is the generation of an address of stallSlice.
func generationOf(a *destinationv1.TcpAddress) int {
	return int(addrKey(a).Addr().As4()[1]) - 100
}

// generations is a live Get stream over gRPC that keeps the set of endpoints it was sent and
// reports each generation when its set is exactly that generation's endpoints.
type generations struct {
	stream          destinationv1.Destination_GetClient
	seen            chan generation
	done            chan error
	bytesAfterFirst atomic.Int64
}

type generation struct {
	gen int
	at  time.Time
}

func watchGenerations(t *testing.T, ctx context.Context, client destinationv1.DestinationClient, path string, n int) *generations {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := client.Get(ctx, &destinationv1.GetDestination{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	g := &generations{stream: stream, seen: make(chan generation, stallRounds+2), done: make(chan error, 1)}
	go func() {
		held := map[netip.AddrPort]int{}
		count := map[int]int{}
		for first := true; ; first = false {
			u, err := stream.Recv()
			if err != nil {
				g.done <- err
				return
			}
			at := time.Now()
			if !first {
				g.bytesAfterFirst.Add(int64(proto.Size(u)))
			}
			for _, a := range u.GetRemove().GetAddrs() {
				if old, ok := held[addrKey(a)]; ok {
					count[old]--
					delete(held, addrKey(a))
				}
			}
			gen := -1
			for _, wa := range u.GetAdd().GetAddrs() {
				if old, ok := held[addrKey(wa.GetAddr())]; ok {
					count[old]--
				}
				gen = generationOf(wa.GetAddr())
				held[addrKey(wa.GetAddr())] = gen
				count[gen]++
			}
			if gen >= 0 && count[gen] == n && len(held) == n {
				select {
				case g.seen <- generation{gen, at}:
				default: // more generations than the test makes: await reports the gap
				}
			}
		}
	}()
	return g
}

// await returns when the stream held exactly generation gen, and fails if it skipped it.
func (g *generations) await(t *testing.T, gen int) time.Time {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case s := <-g.seen:
			switch {
			case s.gen == gen:
				return s.at
			case s.gen > gen:
				t.Fatalf("the live stream went to change %d without ever holding change %d", s.gen, gen)
			}
		case err := <-g.done:
			t.Fatalf("the live stream ended: %v", err)
		case <-deadline:
			t.Fatalf("the live stream did not get change %d within %s", gen, waitFor)
		}
	}
}

// stalledClient is a DestinationClient on a connection of its own.
type stalledClient struct {
	destinationv1.DestinationClient
	close func() error
}

// dialLike opens a connection of its own to the server of live (a stream opened with
// serveTLS's dial: same address, server name and trust anchor) with a fixed stallWindow
// window; received counts the bytes read from the connection (TLS records and all).
func dialLike(t *testing.T, live destinationv1.Destination_GetClient, certs []tls.Certificate) (*stalledClient, *atomic.Int64) {
	t.Helper()
	p, ok := peer.FromContext(live.Context())
	if !ok {
		t.Fatal("the live stream has no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		t.Fatalf("the live stream's connection is not verified TLS: %T", p.AuthInfo)
	}
	chain := info.State.VerifiedChains[0]
	roots := x509.NewCertPool()
	roots.AddCert(chain[len(chain)-1])
	received := &atomic.Int64{}
	conn, err := grpc.NewClient(p.Addr.String(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: info.State.ServerName, Certificates: certs,
		})),
		grpc.WithInitialWindowSize(stallWindow),
		grpc.WithInitialConnWindowSize(stallWindow),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: c, n: received}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &stalledClient{DestinationClient: destinationv1.NewDestinationClient(conn), close: conn.Close}, received
}

// countingConn counts the bytes read.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// The frames of a goroutine that serves a Get stream, and of one whose Send waits for the
// stream's flow control (grpc-go's per-stream write quota, refilled as the peer's window
// lets data out).
const subscribeFrame = "destination.(*Service).Subscribe("

var sendBlockedFrames = []string{subscribeFrame, "transport.(*writeQuota).get("}

// goroutinesWith counts the goroutines whose stack has every one of frames.
func goroutinesWith(frames ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := goruntime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if !slices.ContainsFunc(frames, func(f string) bool { return !strings.Contains(g, f) }) {
			count++
		}
	}
	return count
}

// subscribersOf is the number of Get streams of a's watch.
func (e *env) subscribersOf(a authority) int {
	e.service.watchMu.Lock()
	defer e.service.watchMu.Unlock()
	if w := e.service.watches[a]; w != nil {
		return len(w.subs)
	}
	return 0
}

// eventually polls cond until it holds, failing after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", waitFor, what)
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
}

// percentiles returns the median, the 99th percentile and the maximum of d.
func percentiles(d []time.Duration) (p50, p99, worst time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[(len(s)*99+99)/100-1], s[len(s)-1]
}
