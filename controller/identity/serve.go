package identity

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
)

// shutdownGrace is how long Serve lets running calls finish once its context ends.
const shutdownGrace = 5 * time.Second

// ServerOptions are the gRPC server options of the service: TLS with the serving
// certificate and bounded messages, streams and handshakes.
func (s *Service) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(s.TLSConfig())),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.MaxConcurrentStreams(64),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	}
}

// Serve serves the Identity gRPC service over TLS on lis and reloads the issuer every
// ReloadInterval until ctx ends; then it stops, letting running calls finish for a few
// seconds. It returns nil after a stop asked for by ctx.
func (s *Service) Serve(ctx context.Context, lis net.Listener) error {
	server := grpc.NewServer(s.ServerOptions()...)
	identityv1.RegisterIdentityServer(server, s)

	ticker := time.NewTicker(s.opts.ReloadInterval)
	defer ticker.Stop()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.Watch(watchCtx, ticker.C)
	}()
	defer func() { stopWatch(); <-watched }()

	served := make(chan error, 1)
	go func() { served <- server.Serve(lis) }()
	s.serves.Store(true)
	defer s.serves.Store(false)
	s.log.Info("identity service listening", "addr", lis.Addr().String(), "servingName", s.opts.ServingName)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		server.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
