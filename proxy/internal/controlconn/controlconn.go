// Package controlconn holds what the proxy's connections to the controller (the identity
// and destination services) have in common: their reconnect backoff, and a signal that the
// controller is reachable again, which cuts short the waits of failed attempts.
package controlconn

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
)

// MaxReconnectDelay bounds gRPC's own wait between attempts to reconnect to a controller
// service. gRPC's default grows to 120 s: after a controller outage a proxy could then wait
// two minutes longer than its own retry schedule (1 s to 30 s for destination streams, 1 s to
// 1 min for certificates) before it even tried the returned controller.
const MaxReconnectDelay = 5 * time.Second

// DialOptions are the options every controller connection gets.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: MaxReconnectDelay},
		MinConnectTimeout: 5 * time.Second,
	})}
}

// Readiness follows a connection's state so that callers waiting out a backoff can try again
// as soon as the controller is reachable. A nil *Readiness never signals.
type Readiness struct {
	mu    sync.Mutex
	ready chan struct{}
}

// Watch follows conn until ctx ends: each time it becomes ready the channel Next returned is
// closed; while it is idle it is asked to connect, so that it keeps trying (with the capped
// backoff of DialOptions) even while every caller waits.
func Watch(ctx context.Context, conn *grpc.ClientConn) *Readiness {
	r := &Readiness{ready: make(chan struct{})}
	go func() {
		state := conn.GetState()
		for conn.WaitForStateChange(ctx, state) {
			state = conn.GetState()
			switch state {
			case connectivity.Ready:
				r.mu.Lock()
				close(r.ready)
				r.ready = make(chan struct{})
				r.mu.Unlock()
			case connectivity.Idle:
				conn.Connect()
			}
		}
	}()
	return r
}

// Next returns a channel closed the next time the connection becomes ready (nil, which never
// receives, for a nil Readiness). Take it before the attempt whose failure it may cut short.
func (r *Readiness) Next() <-chan struct{} {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready
}
