// Command order-service is the demo's order API; every order it shows carries its user, read
// from user-service, so each order request is also a request through the mesh to user-service.
//
//	order-service [--http-addr :8080]
//
// HTTP: POST /api/orders (body {"userId": "1", "item": "book", "quantity": 2}) answers 201
// with the order; GET /api/orders/{id} answers the order; GET /healthz. For every order it
// answers, it calls user-service's GET /api/users/{userId} and embeds the answer as "user",
// with "userVersion" (and the header x-user-version) naming the version that answered. When
// user-service fails (an error, a timeout or a status other than 200) it answers 502 with a
// JSON error; POST for a user that user-service does not know answers 422. Tracing headers
// (x-request-id, traceparent, b3, uber-trace-id, ...) are passed on to user-service.
//
// Environment: USER_SERVICE_URL (default
// http://user-service.microservices.svc.cluster.local:8080), USER_SERVICE_TIMEOUT (a Go
// duration, default 2s).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	fs := flag.NewFlagSet("order-service", flag.ExitOnError)
	httpAddr := fs.String("http-addr", ":8080", "address of the HTTP API")
	_ = fs.Parse(os.Args[1:])

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "order-service:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "order-service:", err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler:           newHandler(cfg, logger),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	logger.Info("serving", "http", ln.Addr().String(), "userService", cfg.UserServiceURL)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		logger.Error("serving failed", "err", err)
		os.Exit(1)
	}
}
