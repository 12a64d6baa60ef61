package dataplane

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/lightmesh/lightmesh/internal/tap"
)

// tap publishes every finished request to Options.Tap while someone taps: direction,
// method, authority, path, status, latency to the response head, and the identities and
// addresses of both sides. Without a hub the step is not in the chain; with one, a request
// nobody taps costs one atomic load.
func (p *Proxy) tap(direction string) Middleware {
	return func(next Handler) Handler {
		hub := p.opts.Tap
		if hub == nil {
			return next
		}
		return HandlerFunc(func(ex *Exchange) {
			if !hub.Active() {
				next.ServeExchange(ex)
				return
			}
			start := time.Now()
			r := ex.R
			ev := tap.Event{
				Time: start, Direction: direction, Method: r.Method,
				Authority: ex.Authority, Path: r.URL.Path,
			}
			w := &tapWriter{ResponseWriter: ex.W, start: start}
			ex.W = w
			defer func() {
				ex.W = w.ResponseWriter
				p.finishTapEvent(&ev, ex, w)
				hub.Publish(&ev)
			}()
			next.ServeExchange(ex)
		})
	}
}

// finishTapEvent fills what the chain learnt: status, latency, error, peers.
func (p *Proxy) finishTapEvent(ev *tap.Event, ex *Exchange, w *tapWriter) {
	ev.Status = ex.Status
	if ev.Status == 0 {
		ev.Status = w.status
	}
	if w.wrote.IsZero() {
		ev.LatencyMs = float64(time.Since(ev.Time)) / float64(time.Millisecond)
	} else {
		ev.LatencyMs = float64(w.wrote.Sub(ev.Time)) / float64(time.Millisecond)
	}
	h := w.Header()
	switch {
	case h.Get(ProxyErrorHeader) != "":
		ev.Error = h.Get(ProxyErrorHeader)
	case ev.Status == 0:
		ev.Error = "no response"
	default:
		g := h.Get(http.TrailerPrefix + "Grpc-Status")
		if g == "" {
			g = h.Get("Grpc-Status")
		}
		if g != "" && g != "0" {
			ev.Error = "grpc-status " + g
		}
	}
	local := ""
	if p.opts.TLS != nil {
		if id, err := p.opts.TLS.LocalIdentity(); err == nil {
			local = p.idString(id)
		}
	}
	if ev.Direction == inbound {
		ev.SourceIdentity, ev.DestinationIdentity = ex.Conn.clientID, local
		if ex.Conn.remote.IsValid() {
			ev.SourceAddr = unmapped(ex.Conn.remote)
		} else {
			ev.SourceAddr = ex.R.RemoteAddr
		}
		ev.DestinationAddr = unmapped(ex.Conn.origDst)
		return
	}
	ev.SourceIdentity, ev.DestinationIdentity = local, ex.ServerID
	ev.SourceAddr = ex.R.RemoteAddr
	if ap, err := netip.ParseAddrPort(ev.SourceAddr); err == nil {
		ev.SourceAddr = unmapped(ap)
	}
	if ex.Target.IsValid() {
		ev.DestinationAddr = unmapped(ex.Target)
	}
}

// unmapped writes an address without its IPv4-in-IPv6 mapping (10.0.0.1:80, not
// [::ffff:10.0.0.1]:80).
func unmapped(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// tapWriter notes when, and with which status, the response head was written.
type tapWriter struct {
	http.ResponseWriter
	start  time.Time
	wrote  time.Time
	status int
}

func (w *tapWriter) WriteHeader(code int) {
	if w.wrote.IsZero() && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.wrote, w.status = time.Now(), code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *tapWriter) Write(b []byte) (int, error) {
	if w.wrote.IsZero() {
		w.wrote, w.status = time.Now(), http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes flushes on (the response streams as it comes).
func (w *tapWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack passes the connection on for upgrades (WebSocket).
func (w *tapWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
		return hj.Hijack()
	}
	return nil, nil, http.ErrNotSupported
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *tapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
