// Package controlconn holds what the proxy's connections to the controller (the identity
// and destination services) have in common.
package controlconn

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
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
