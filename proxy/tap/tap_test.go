package tap

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/tap"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
)

const (
	proxyID      = "spiffe://cluster.local/ns/shop/sa/web"
	controllerID = "spiffe://cluster.local/ns/lightmesh/sa/lightmesh-controller"
	otherID      = "spiffe://cluster.local/ns/shop/sa/intruder"
)

func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("LM_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func event(path string) *tap.Event {
	return &tap.Event{Direction: tap.Inbound, Method: "GET", Authority: "web.shop:80", Path: path, Status: 200}
}

// startServer runs a tap server for proxyID allowing controllerID, on a free port.
func startServer(t *testing.T, pki *testpki.PKI, hub *Hub) *Server {
	t.Helper()
	mtls, err := meshtls.New(meshtls.Options{Source: pki.Source(t, proxyID)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServerOptions{
		Addr: "127.0.0.1:0", Hub: hub, Certificate: mtls.Certificate,
		VerifyClient: func(raw [][]byte) (identity.SpiffeID, error) { return mtls.VerifyPeer(raw, x509.ExtKeyUsageClientAuth) },
		Allowed:      testpki.ID(t, controllerID),
		Logger:       testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// client returns an HTTPS client presenting a certificate for id and checking the server's.
func client(t *testing.T, pki *testpki.PKI, id string) *http.Client {
	return clientWith(t, pki, pki, id)
}

// clientWith is client with a certificate from certPKI.
func clientWith(t *testing.T, pki, certPKI *testpki.PKI, id string) *http.Client {
	t.Helper()
	cert := certPKI.Leaf(t, id)
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert},
		// The server's identity is checked by hand, as the controller does.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			inter := x509.NewCertPool()
			for _, der := range raw[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pki.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			got, err := identity.SpiffeIDFromCertificate(leaf)
			if err != nil || got.String() != proxyID {
				return fmt.Errorf("server is %v (%w)", got, err)
			}
			return nil
		},
	}}}
}

// waitActive waits until the hub has n taps.
func waitActive(t *testing.T, hub *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for int(hub.active.Load()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the hub has %d taps, want %d", hub.active.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The controller's identity taps: it gets the matching events as NDJSON, up to max.
func TestServerStreamsToController(t *testing.T) {
	pki := testpki.New(t)
	hub := NewHub(0, 0)
	s := startServer(t, pki, hub)
	url := "https://" + s.Addr().String() + tap.ProxyPath + "?max=2&path-prefix=/api"
	done := make(chan []string, 1)
	errs := make(chan error, 1)
	go func() {
		resp, err := client(t, pki, controllerID).Get(url)
		if err != nil {
			errs <- err
			return
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != tap.ContentType {
			errs <- fmt.Errorf("status %d, content type %q", resp.StatusCode, ct)
			return
		}
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		done <- lines
	}()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	waitActive(t, hub, 1)
	for _, p := range []string{"/api/1", "/web", "/api/2", "/api/3"} {
		hub.Publish(event(p))
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	case lines := <-done:
		if len(lines) != 2 {
			t.Fatalf("got %d lines, want 2 (max): %q", len(lines), lines)
		}
		for i, want := range []string{"/api/1", "/api/2"} {
			var ev tap.Event
			if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil || ev.Path != want {
				t.Errorf("line %d = %s (%v), want path %s", i, lines[i], err, want)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the tap did not end after max events")
	}
	waitActive(t, hub, 0)
}

// Any other identity, a client without a certificate, and plaintext are refused before a
// tap starts.
func TestServerRefusesOthers(t *testing.T) {
	pki := testpki.New(t)
	hub := NewHub(0, 0)
	s := startServer(t, pki, hub)
	url := "https://" + s.Addr().String() + tap.ProxyPath + "?duration=1s"

	if resp, err := client(t, pki, otherID).Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("a client with identity %s got status %d, want a refused handshake", otherID, resp.StatusCode)
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := noCert.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got status %d, want a refused handshake", resp.StatusCode)
	}
	// Another PKI's certificate for the controller's very identity is not trusted.
	if resp, err := clientWith(t, pki, testpki.New(t), controllerID).Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from another trust anchor got status %d", resp.StatusCode)
	}
	conn, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, "GET "+tap.ProxyPath+" HTTP/1.1\r\nHost: x\r\n\r\n")
	reply, _ := io.ReadAll(conn)
	if strings.Contains(string(reply), "200 OK") {
		t.Errorf("plaintext got %q", reply)
	}
	if hub.active.Load() != 0 {
		t.Error("a refused client started a tap")
	}
}

// A reader that does not keep up loses events, counted, and the publisher never waits.
func TestSlowReaderDropsWithoutBlocking(t *testing.T) {
	hub := NewHub(1, 4)
	sub, err := hub.Subscribe(tap.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := hub.Subscribe(tap.Filter{}); !errors.Is(err, ErrTooManyTaps) {
		t.Errorf("a second tap over the limit: %v, want ErrTooManyTaps", err)
	}
	published := make(chan struct{})
	go func() {
		for i := range 100 {
			hub.Publish(event(fmt.Sprint("/", i)))
		}
		close(published)
	}()
	select {
	case <-published:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a reader that does not read")
	}
	if sub.Dropped() != 96 || hub.Dropped() != 96 {
		t.Errorf("dropped %d (hub %d), want 96", sub.Dropped(), hub.Dropped())
	}
	if got := (<-sub.Events()).Path; got != "/0" {
		t.Errorf("first kept event %s, want /0", got)
	}
}

// The stream reports its drops at the end, and ends at its duration without events.
func TestHandlerReportsDrops(t *testing.T) {
	hub := NewHub(0, 2)
	h := Handler(hub, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	rec := &pipeWriter{header: http.Header{}, w: pw}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tap.ProxyPath+"?duration=500ms", nil)
	go func() {
		h.ServeHTTP(rec, req)
		pw.Close()
	}()
	waitActive(t, hub, 1)
	for i := range 5 {
		hub.Publish(event(fmt.Sprint("/", i)))
	}
	body, _ := io.ReadAll(pr)
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	// The handler may have taken the first event before the others came: 2 or 3 events
	// were delivered, the rest dropped and reported.
	var last tap.StreamError
	events := len(lines) - 1
	want := fmt.Sprintf("%d events dropped", 5-events)
	if err := json.Unmarshal([]byte(lines[events]), &last); err != nil || !strings.Contains(last.StreamError, want) || events < 2 || events > 3 {
		t.Errorf("lines %q (%v), want 2 or 3 events then %q", lines, err, want)
	}
}

// pipeWriter is a ResponseWriter into a pipe (httptest.ResponseRecorder buffers everything).
type pipeWriter struct {
	header http.Header
	w      io.Writer
}

func (p *pipeWriter) Header() http.Header         { return p.header }
func (p *pipeWriter) WriteHeader(int)             {}
func (p *pipeWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeWriter) Flush()                      {}

// BenchmarkActiveIdle is the data plane's cost when nobody taps.
func BenchmarkActiveIdle(b *testing.B) {
	hub := NewHub(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		if hub.Active() {
			b.Fatal("active")
		}
	}
}
