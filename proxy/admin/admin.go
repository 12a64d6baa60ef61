// Package admin is the proxy's admin server (port 4191): /live, /ready (with a detail of a
// degraded state, such as the destination service being away), /metrics,
// /shutdown (POST from localhost only) and, behind a flag, /debug/pprof/. It answers only
// requests whose Host is localhost, a loopback address or the pod's IP, so that a web page
// in a browser on another origin cannot reach it (DNS rebinding).
package admin

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"
)

// DefaultAddr is the admin listener.
const DefaultAddr = "0.0.0.0:4191"

// Options configure a Server.
type Options struct {
	// Addr is the listen address (DefaultAddr).
	Addr string
	// Ready reports whether the proxy is ready: /ready answers 200 only then. Required.
	Ready func() bool
	// ReadyDetail, when it returns something, is added to /ready's answer after "ready; "
	// (or "not ready; "): a degraded state that does not make the proxy unready, such as
	// "destination disconnected for 42s, serving last known state". Optional.
	ReadyDetail func() string
	// Metrics serves /metrics. Required.
	Metrics http.Handler
	// Shutdown is called by POST /shutdown. Required.
	Shutdown func()
	// PodIP is accepted as Host besides localhost and loopback addresses (optional).
	PodIP netip.Addr
	// PodName is accepted as Host too (optional).
	PodName string
	// Certificate returns the proxy's current certificate chain for GET
	// /identity/certificate (PEM, leaf first), so `mesh check --proxy` can verify it chains to
	// the trust anchors; nil: 404.
	Certificate func() (*tls.Certificate, error)
	// Pprof serves /debug/pprof/.
	Pprof bool
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
}

func (o *Options) validate() error {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Ready == nil || o.Metrics == nil || o.Shutdown == nil {
		return errors.New("admin: Ready, Metrics and Shutdown are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Server is the admin HTTP server.
type Server struct {
	opts Options
	srv  *http.Server
	ln   net.Listener
}

// New returns a server for opts.
func New(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "live") })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		detail := ""
		if opts.ReadyDetail != nil {
			if d := opts.ReadyDetail(); d != "" {
				detail = "; " + d
			}
		}
		if !opts.Ready() {
			http.Error(w, "not ready"+detail, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready"+detail)
	})
	mux.Handle("GET /metrics", opts.Metrics)
	mux.HandleFunc("GET "+certificatePath, func(w http.ResponseWriter, _ *http.Request) {
		if opts.Certificate == nil {
			http.Error(w, "this proxy has no mesh identity", http.StatusNotFound)
			return
		}
		cert, err := opts.Certificate()
		if err != nil || cert == nil || len(cert.Certificate) == 0 {
			http.Error(w, "no certificate yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		for _, der := range cert.Certificate {
			_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
	})
	mux.HandleFunc("POST /shutdown", func(w http.ResponseWriter, r *http.Request) {
		if !fromLoopback(r.RemoteAddr) {
			http.Error(w, "shutdown is only accepted from localhost", http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, "shutting down")
		opts.Logger.Info("shutdown requested through the admin server")
		go opts.Shutdown()
	})
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.srv = &http.Server{
		Handler:           s.checkHost(mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return s, nil
}

// Handler returns the server's handler, for tests.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// certificatePath serves the proxy's certificate chain.
const certificatePath = "/identity/certificate"

// checkHost refuses requests whose Host is not this pod, except for the certificate chain.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The certificate chain is public and read-only, and the API server's pod proxy
		// passes its own Host on: mesh check --proxy reads it that way.
		certificate := r.Method == http.MethodGet && r.URL.Path == certificatePath
		if !certificate && !s.allowedHost(r.Host) {
			http.Error(w, "forbidden host; use localhost or the pod IP", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) allowedHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || (s.opts.PodName != "" && host == s.opts.PodName) {
		return true
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	return addr.IsLoopback() || (s.opts.PodIP.IsValid() && addr == s.opts.PodIP.Unmap())
}

func fromLoopback(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen admin on %s: %w; is another proxy running?", s.opts.Addr, err)
	}
	s.ln = ln
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}

// Addr returns the listener's address once started.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
