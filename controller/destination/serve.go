package destination

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
)

// shutdownGrace is how long Serve lets streams end once its context ends.
const shutdownGrace = 5 * time.Second

// ServerOptions are the gRPC options of the service: TLS with tlsConfig (which must require
// client certificates, see RequireClientIdentity), keepalives, bounded streams.
func ServerOptions(tlsConfig *tls.Config) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.MaxRecvMsgSize(16 << 10),
		grpc.MaxConcurrentStreams(1024),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}

// Serve serves the Destination service on lis until ctx ends, then stops, letting streams
// end for a few seconds. It returns nil after a stop asked for by ctx.
func (s *Service) Serve(ctx context.Context, lis net.Listener, tlsConfig *tls.Config) error {
	server := grpc.NewServer(ServerOptions(tlsConfig)...)
	destinationv1.RegisterDestinationServer(server, s)
	served := make(chan error, 1)
	go func() { served <- server.Serve(lis) }()
	s.log.Info("destination service listening", "addr", lis.Addr().String())
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
