package controlconn

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func serveHealth(t *testing.T, lis net.Listener) func() {
	t.Helper()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { _ = srv.Serve(lis); close(done) }()
	return func() { srv.Stop(); <-done }
}

// Next's channel closes when the connection is ready again after its server came back, even
// though nobody calls in the meantime (Watch asks an idle connection to connect).
func TestReadinessSignalsTheServersReturn(t *testing.T) {
	var none *Readiness
	if none.Next() != nil {
		t.Fatal("a nil Readiness must never signal")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	stop := serveHealth(t, lis)
	conn, err := grpc.NewClient(addr, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := Watch(ctx, conn)
	callCtx, callCancel := context.WithTimeout(ctx, 10*time.Second)
	defer callCancel()
	if _, err := healthpb.NewHealthClient(conn).Check(callCtx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	ready := r.Next()
	stop()
	select {
	case <-ready:
		t.Fatal("signalled while the server was gone")
	case <-time.After(200 * time.Millisecond): // the server is away for a moment
	}
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen on %s again: %v", addr, err)
	}
	defer serveHealth(t, lis2)()
	select {
	case <-ready:
	case <-time.After(10 * time.Second): // MaxReconnectDelay is 5 s
		t.Fatal("no signal within 10 s of the server's return")
	}
}
