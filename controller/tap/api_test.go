package tap

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/internal/tap"
	proxytap "github.com/lightmesh/lightmesh/proxy/tap"
)

const controllerID = "spiffe://cluster.local/ns/lightmesh/sa/lightmesh-controller"

// pki is a trust anchor and issuer, with the issuer files written for SelfIssued.
type pki struct {
	anchor *identity.TrustAnchor
	issuer *identity.Issuer
	dir    string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	anchor, err := identity.GenerateTrustAnchor(identity.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := identity.GenerateIssuer(anchor, identity.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": issuer.CertificatePEM(), "tls.key": key, "ca.crt": anchor.CertificatePEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &pki{anchor: anchor, issuer: issuer, dir: dir}
}

func mustID(t *testing.T, s string) identity.SpiffeID {
	t.Helper()
	id, err := identity.ParseSpiffeID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// leaf issues a workload certificate for id.
func (p *pki) leaf(t *testing.T, id string) *tls.Certificate {
	t.Helper()
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := identity.NewCSR(key, mustID(t, id))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := p.issuer.Sign(csr, mustID(t, id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{cert.Raw, p.issuer.Certificate.Raw}, PrivateKey: key, Leaf: cert}
}

// proxy runs a real proxy tap server presenting id and allowing the controller.
func (p *pki) proxy(t *testing.T, id string) (*proxytap.Hub, string) {
	t.Helper()
	verifier, err := identity.NewVerifier([]*x509.Certificate{p.anchor.Certificate}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cert := p.leaf(t, id)
	hub := proxytap.NewHub(0, 0)
	s, err := proxytap.NewServer(proxytap.ServerOptions{
		Addr: "127.0.0.1:0", Hub: hub,
		Certificate: func() (*tls.Certificate, error) { return cert, nil },
		VerifyClient: func(raw [][]byte) (identity.SpiffeID, error) {
			return verifier.VerifyRaw(raw, x509.ExtKeyUsageClientAuth)
		},
		Allowed: mustID(t, controllerID),
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return hub, s.Addr().String()
}

func pod(name, ip, sa, owner string, meshed bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"pod-template-hash": "abc"}},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: owner + "-abc"}}
	}
	if meshed {
		p.Spec.InitContainers = []corev1.Container{{Name: inject.ProxyContainerName}}
	}
	return p
}

// newAPI serves an API over pods, dialling pod IPs through routes (ip -> local address).
func newAPI(t *testing.T, p *pki, pods []*corev1.Pod, routes map[string]string) *httptest.Server {
	t.Helper()
	self := &SelfIssued{IssuerDir: p.dir, ID: mustID(t, controllerID)}
	api, err := New(Options{
		Pods:        func(context.Context, string) ([]*corev1.Pod, error) { return pods, nil },
		Certificate: self.Certificate,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			to, ok := routes[host]
			if !ok {
				return nil, fmt.Errorf("no route to %s", addr)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, to)
		},
		ConnectTimeout: 3 * time.Second,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

func waitActive(t *testing.T, hubs ...*proxytap.Hub) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, h := range hubs {
		for !h.Active() {
			if time.Now().After(deadline) {
				t.Fatal("a proxy was not tapped within 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// result is what a tap returned.
type result struct {
	events []tap.Event
	errs   []tap.StreamError
}

// startTap opens a tap and reads it in the background; its result comes once it ends.
func startTap(t *testing.T, url string) <-chan result {
	t.Helper()
	resp, err := http.Get(url) //nolint:bodyclose // closed by the reader below
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tap.ContentType {
		resp.Body.Close()
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan result, 1)
	go func() {
		defer resp.Body.Close()
		var r result
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"streamError"`) {
				var e tap.StreamError
				_ = json.Unmarshal(sc.Bytes(), &e)
				r.errs = append(r.errs, e)
				continue
			}
			var ev tap.Event
			_ = json.Unmarshal(sc.Bytes(), &ev)
			r.events = append(r.events, ev)
		}
		out <- r
	}()
	return out
}

func waitResult(t *testing.T, c <-chan result) result {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("the tap did not end within 20s")
	}
	return result{}
}

// The API taps every running meshed pod of the deployment, fills in each event's pod and
// namespace, merges the streams, reports the pod it cannot reach, and ends after max events.
func TestAPIMergesPodStreams(t *testing.T) {
	p := newPKI(t)
	hub1, addr1 := p.proxy(t, "spiffe://cluster.local/ns/shop/sa/web")
	hub2, addr2 := p.proxy(t, "spiffe://cluster.local/ns/shop/sa/web")
	otherHub, otherAddr := p.proxy(t, "spiffe://cluster.local/ns/shop/sa/db")
	pods := []*corev1.Pod{
		pod("web-1", "10.0.0.1", "web", "web", true),
		pod("web-2", "10.0.0.2", "web", "web", true),
		pod("web-3", "10.0.0.3", "web", "web", true), // no route: unreachable
		pod("web-plain", "10.0.0.4", "web", "web", false),
		pod("db-1", "10.0.0.5", "db", "db", true),
	}
	srv := newAPI(t, p, pods, map[string]string{"10.0.0.1": addr1, "10.0.0.2": addr2, "10.0.0.4": otherAddr, "10.0.0.5": otherAddr})
	res := startTap(t, srv.URL+tap.APIPath+"?namespace=shop&resource=deploy/web&max=4&path-prefix=/api")
	waitActive(t, hub1, hub2)
	if otherHub.Active() {
		t.Error("a pod of another deployment (or an unmeshed pod) was tapped")
	}
	for i := range 3 {
		for _, h := range []*proxytap.Hub{hub1, hub2} {
			h.Publish(&tap.Event{Direction: tap.Inbound, Method: "GET", Path: fmt.Sprint("/api/", i), Status: 200})
			h.Publish(&tap.Event{Direction: tap.Inbound, Method: "GET", Path: "/skipped", Status: 200})
		}
	}
	r := waitResult(t, res)
	if len(r.events) != 4 {
		t.Fatalf("got %d events, want 4 (max): %+v", len(r.events), r.events)
	}
	seen := map[string]bool{}
	for _, ev := range r.events {
		if ev.Namespace != "shop" || !strings.HasPrefix(ev.Path, "/api/") {
			t.Errorf("event %+v", ev)
		}
		seen[ev.Pod] = true
	}
	if !seen["web-1"] || !seen["web-2"] || len(seen) != 2 {
		t.Errorf("events came from %v, want web-1 and web-2", seen)
	}
	if len(r.errs) != 1 || r.errs[0].Pod != "web-3" || !strings.Contains(r.errs[0].StreamError, "cannot tap its proxy") {
		t.Errorf("stream errors %+v, want one for web-3", r.errs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for hub1.Active() || hub2.Active() {
		if time.Now().After(deadline) {
			t.Fatal("the proxies' taps were not closed after the API's tap ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A proxy that is not the pod's identity is not tapped: the API reports it.
func TestAPIChecksProxyIdentity(t *testing.T) {
	p := newPKI(t)
	hub, addr := p.proxy(t, "spiffe://cluster.local/ns/shop/sa/impostor")
	srv := newAPI(t, p, []*corev1.Pod{pod("web-1", "10.0.0.1", "web", "web", true)}, map[string]string{"10.0.0.1": addr})
	r := waitResult(t, startTap(t, srv.URL+tap.APIPath+"?namespace=shop&resource=pod/web-1&duration=2s"))
	if len(r.events) != 0 || len(r.errs) != 1 || !strings.Contains(r.errs[0].StreamError, "impostor") {
		t.Errorf("result %+v, want one stream error naming the impostor", r)
	}
	if hub.Active() {
		t.Error("the impostor was tapped")
	}
}

// The tap ends at its duration when nothing happens.
func TestAPIEndsAtDuration(t *testing.T) {
	p := newPKI(t)
	_, addr := p.proxy(t, "spiffe://cluster.local/ns/shop/sa/web")
	srv := newAPI(t, p, []*corev1.Pod{pod("web-1", "10.0.0.1", "web", "web", true)}, map[string]string{"10.0.0.1": addr})
	start := time.Now()
	r := waitResult(t, startTap(t, srv.URL+tap.APIPath+"?namespace=shop&resource=deployment/web&duration=500ms"))
	if len(r.events)+len(r.errs) != 0 {
		t.Errorf("result %+v, want nothing", r)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 10*time.Second {
		t.Errorf("the tap lasted %s, want about 500ms", d)
	}
}

func TestAPIRefusesBadQueries(t *testing.T) {
	p := newPKI(t)
	srv := newAPI(t, p, []*corev1.Pod{pod("web-1", "10.0.0.1", "web", "web", true)}, nil)
	for query, code := range map[string]int{
		"resource=deploy/web":                            http.StatusBadRequest,
		"namespace=shop&resource=service/web":            http.StatusBadRequest,
		"namespace=shop&resource=deploy/web&max=0":       http.StatusBadRequest,
		"namespace=shop&resource=deploy/nothing":         http.StatusNotFound,
		"namespace=shop&resource=deploy/web&direction=x": http.StatusBadRequest,
	} {
		resp, err := http.Get(srv.URL + tap.APIPath + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != code || body["error"] == "" {
			t.Errorf("%s: %d %v, want %d with an error", query, resp.StatusCode, body, code)
		}
	}
}

// The controller's certificate is its own identity, chains to the anchors, and is issued
// again after 70 % of its life.
func TestSelfIssuedRenews(t *testing.T) {
	p := newPKI(t)
	clock := identity.NewFakeClock(time.Now())
	s := &SelfIssued{IssuerDir: p.dir, ID: mustID(t, controllerID), Clock: clock}
	first, anchors, err := s.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(anchors, "", clock)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.VerifyRaw(first.Certificate, x509.ExtKeyUsageClientAuth); err != nil || id.String() != controllerID {
		t.Fatalf("certificate for %v (%v), want %s", id, err, controllerID)
	}
	clock.Advance(16 * time.Hour)
	if again, _, _ := s.Certificate(); again != first {
		t.Error("renewed before 70 % of its life")
	}
	clock.Advance(2 * time.Hour)
	renewed, _, err := s.Certificate()
	if err != nil || renewed == first {
		t.Errorf("not renewed after 70 %% of its life (%v)", err)
	}
	if _, _, err := (&SelfIssued{ID: mustID(t, controllerID)}).Certificate(); err == nil || !strings.Contains(err.Error(), "--issuer-dir") {
		t.Errorf("without an issuer: %v", err)
	}
}
