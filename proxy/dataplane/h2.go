package dataplane

import (
	"context"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// newH2Server returns the HTTP/2 server of every connection that speaks it: the
// application's (prior knowledge), plaintext inbound ones, and mesh ones from peer proxies.
// Its limits follow Options.HTTP; Shutdown sends every connection a GOAWAY.
func (p *Proxy) newH2Server() *http.Server {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		Protocols:         &protocols,
		ReadHeaderTimeout: p.opts.HTTP.ReadHeaderTimeout,
		IdleTimeout:       p.opts.HTTP.IdleTimeout,
		MaxHeaderBytes:    p.opts.HTTP.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          250,
			MaxReadFrameSize:              1 << 20,
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
			SendPingTimeout:               30 * time.Second,
			PingTimeout:                   15 * time.Second,
			WriteByteTimeout:              30 * time.Second,
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic, ok := c.(*infoConn); ok {
				return withConnInfo(ctx, ic.info)
			}
			return ctx
		},
		ErrorLog: slogToLog(p.log),
	}
}

// slogToLog adapts the proxy's logger for net/http's error log, at debug level: those are
// misbehaving clients, not the proxy's faults.
func slogToLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}
