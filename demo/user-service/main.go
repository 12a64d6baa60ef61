// Command user-service is the demo's user API, deployed twice (VERSION=v1 and VERSION=v2) so
// the mesh can split traffic between the two.
//
//	user-service [--http-addr :8080] [--grpc-addr :9090]
//
// HTTP on --http-addr: GET /api/users, GET /api/users/{id}, POST /api/users,
// PUT /api/users/{id}, GET /healthz. Every answer is JSON with a "version" field and carries
// the header x-version. gRPC on --grpc-addr: the standard health service
// (grpc.health.v1.Health), SERVING for "" and "user-service".
//
// Environment: VERSION (v1 or v2, default v1; v2 adds "email" to users), FAIL_RATE (0..1,
// the fraction of requests answered 500), FAIL_EVERY (N: every Nth request answers 500;
// it wins over FAIL_RATE). /healthz never fails and is not counted.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	fs := flag.NewFlagSet("user-service", flag.ExitOnError)
	httpAddr := fs.String("http-addr", ":8080", "address of the HTTP API")
	grpcAddr := fs.String("grpc-addr", ":9090", "address of the gRPC health service")
	_ = fs.Parse(os.Args[1:])

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "user-service:", err)
		os.Exit(2)
	}
	httpLn, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "user-service:", err)
		os.Exit(1)
	}
	grpcLn, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "user-service:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, httpLn, grpcLn, cfg, logger); err != nil {
		logger.Error("serving failed", "err", err)
		os.Exit(1)
	}
}
