package destination

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/lightmesh/lightmesh/internal/policy"
)

// dnsServer is an in-test DNS server on loopback UDP: it answers the records set for a name
// (REFUSED for names without any, SERVFAIL while failing).
type dnsServer struct {
	addr string

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	failing bool
	queries int
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), records: map[string][]dns.RR{}}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: d, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { _ = srv.ActivateAndServe(); close(done) }()
	select {
	case <-started:
	case <-time.After(waitFor):
		t.Fatal("the DNS server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return d
}

// set replaces the records of name ("api.example.com. 30 IN A 192.0.2.10" lines).
func (d *dnsServer) set(t *testing.T, name string, lines ...string) {
	t.Helper()
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[strings.ToLower(dns.Fqdn(name))] = rrs
}

func (d *dnsServer) fail(failing bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing = failing
}

func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	d.mu.Lock()
	d.queries++
	q := req.Question[0]
	rrs, known := d.records[strings.ToLower(q.Name)]
	switch {
	case d.failing:
		m.Rcode = dns.RcodeServerFailure
	case !known:
		m.Rcode = dns.RcodeRefused
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	d.mu.Unlock()
	_ = w.WriteMsg(m)
}

// fakeAfter records the waits asked for; the test fires them.
type fakeAfter struct{ waits chan wait }

type wait struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeAfter() *fakeAfter { return &fakeAfter{waits: make(chan wait, 100)} }

func (f *fakeAfter) after(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	f.waits <- wait{d: d, fire: ch}
	return ch
}

func (f *fakeAfter) next(t *testing.T) wait {
	t.Helper()
	select {
	case w := <-f.waits:
		return w
	case <-time.After(waitFor):
		t.Fatalf("no wait within %s", waitFor)
	}
	return wait{}
}

// fakePolicy is a PolicySource whose model the test sets.
type fakePolicy struct {
	mu       sync.Mutex
	model    *policy.Model
	watchers []func()
}

func (f *fakePolicy) Model() *policy.Model {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.model
}

func (f *fakePolicy) OnChange(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchers = append(f.watchers, fn)
}

func (f *fakePolicy) set(m *policy.Model) {
	f.mu.Lock()
	f.model = m
	watchers := append([]func(){}, f.watchers...)
	f.mu.Unlock()
	for _, fn := range watchers {
		fn()
	}
}
