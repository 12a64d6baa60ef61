package tap

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/tap"
)

// DefaultAddr is the tap listener.
var DefaultAddr = fmt.Sprintf("0.0.0.0:%d", tap.ProxyPort)

// writeTimeout is how long past its duration a tap's response may take to write.
const writeTimeout = 10 * time.Second

// ServerOptions configure a Server.
type ServerOptions struct {
	// Addr is the listener (DefaultAddr); port 0 picks a free port (tests).
	Addr string
	// Hub is where events come from. Required.
	Hub *Hub
	// Certificate returns the proxy's workload certificate. Required.
	Certificate func() (*tls.Certificate, error)
	// VerifyClient checks a client's chain (leaf first) against the mesh's trust anchors for
	// client authentication and returns its identity (meshtls.TLS.VerifyPeer). Required.
	VerifyClient func(raw [][]byte) (identity.SpiffeID, error)
	// Allowed is the only identity that may tap: the controller's. Required.
	Allowed identity.SpiffeID
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
}

// Server serves tap.ProxyPath over mutual TLS to the Allowed identity only.
type Server struct {
	opts ServerOptions
	ln   net.Listener
	http *http.Server
	done chan struct{}
}

// NewServer checks opts.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Hub == nil || opts.Certificate == nil || opts.VerifyClient == nil {
		return nil, errors.New("tap: a hub, the proxy's certificate and a client verifier are required")
	}
	if err := opts.Allowed.Validate(); err != nil {
		return nil, fmt.Errorf("tap: the identity allowed to tap: %w; set MESH_PROXY_TAP_IDENTITY", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET "+tap.ProxyPath, Handler(opts.Hub, opts.Logger))
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		TLSConfig:         s.TLSConfig(),
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// TLSConfig is the listener's configuration: TLS 1.3, the proxy's certificate, and a
// required client certificate of the Allowed identity.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		NextProtos:             []string{"http/1.1"},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.opts.Certificate()
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := s.opts.VerifyClient(raw)
			if err != nil {
				return err
			}
			if id != s.opts.Allowed {
				s.opts.Logger.Warn("refused a tap client: only the controller may tap", "client", id.String(), "allowed", s.opts.Allowed.String())
				return fmt.Errorf("tap: %s may not tap this proxy; only %s may", id, s.opts.Allowed)
			}
			return nil
		},
	}
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen for taps on %s: %w; is another proxy running? (MESH_PROXY_TAP_ADDR)", s.opts.Addr, err)
	}
	s.ln = ln
	go func() {
		defer close(s.done)
		if err := s.http.Serve(tls.NewListener(ln, s.http.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("the tap server stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the listener's address, once started.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server; running taps end at once (they are not worth a grace period).
func (s *Server) Shutdown() {
	if s.ln == nil {
		return
	}
	_ = s.http.Close()
	<-s.done
}

// Handler serves one tap per request: the query (tap.ParseQuery) says which events, how
// many and for how long; they are streamed as NDJSON, one line each, flushed at once.
func Handler(hub *Hub, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := tap.ParseQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sub, err := hub.Subscribe(q.Filter)
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		defer sub.Close()
		log.Debug("tap started", "max", q.Max, "duration", q.Duration.String(), "remote", r.RemoteAddr)
		rc := http.NewResponseController(w)
		// A client that stops reading loses its tap at the latest writeTimeout after its end.
		_ = rc.SetWriteDeadline(time.Now().Add(q.Duration + writeTimeout))
		w.Header().Set("Content-Type", tap.ContentType)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return
		}
		timer := time.NewTimer(q.Duration)
		defer timer.Stop()
		enc := json.NewEncoder(w)
	loop:
		for sent := 0; sent < q.Max; {
			select {
			case ev := <-sub.Events():
				if enc.Encode(&ev) != nil || rc.Flush() != nil {
					return
				}
				sent++
			case <-timer.C:
				break loop
			case <-r.Context().Done():
				return
			}
		}
		if n := sub.Dropped(); n > 0 {
			_ = enc.Encode(tap.StreamError{StreamError: fmt.Sprintf("%d events dropped: the tap reader was too slow", n)})
			_ = rc.Flush()
		}
	})
}

// Hub returns the server's hub, which the data plane publishes to.
func (s *Server) Hub() *Hub { return s.opts.Hub }
