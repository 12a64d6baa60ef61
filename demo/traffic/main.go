// Command traffic is the demo's traffic generator: a constant rate of requests to
// order-service (POST /api/orders, GET /api/orders/{id}) and directly to user-service
// (GET /api/users/{id}), in turn, each with a bounded timeout. It counts successes (2xx) and
// failures per target, failures per status ("error" when there was no answer), and answers
// per version (x-user-version from order-service, x-version from user-service), and prints
// one summary line to stdout every --report-every, then a final one:
//
//	traffic elapsed=10s sent=100 dropped=0 | order-service ok=66 fail=1 [502:1] v1=60 v2=7 | user-service ok=33 fail=0 v1=30 v2=3
//
// It stops after --duration (0: never) or on SIGTERM/SIGINT, after the requests in flight
// finish. With --health-addr it also answers GET /healthz there, for probes.
//
// With --request "METHOD URL" (repeatable) it sends just those requests, one at a time, and
// prints a line per request with the status, x-version and the proxy's Lightmesh-Proxy-Error
// header: the end-to-end tests use it to try the seed's policies from a meshed pod.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	opts := defaultOptions()
	fs := flag.NewFlagSet("traffic", flag.ExitOnError)
	fs.StringVar(&opts.OrderURL, "order-url", opts.OrderURL, "order-service's base URL")
	fs.StringVar(&opts.UserURL, "user-url", opts.UserURL, "user-service's base URL")
	fs.Float64Var(&opts.RPS, "rps", opts.RPS, "requests per second, over all targets")
	fs.DurationVar(&opts.Duration, "duration", opts.Duration, "how long to run; 0 runs until SIGTERM")
	fs.DurationVar(&opts.ReportEvery, "report-every", opts.ReportEvery, "how often to print a summary line")
	fs.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "timeout of each request")
	fs.IntVar(&opts.Users, "users", opts.Users, "user ids to ask for: 1..N")
	fs.IntVar(&opts.MaxInFlight, "max-in-flight", opts.MaxInFlight, "requests outstanding at most; a request due beyond it is dropped and counted")
	healthAddr := fs.String("health-addr", "", "if set, answer GET /healthz on this address (e.g. :8080)")
	var requests []requestLine
	fs.Func("request", `send this one request ("METHOD URL"; repeatable), print its status, and exit instead of generating traffic`, func(s string) error {
		rl, err := parseRequestLine(s)
		if err == nil {
			requests = append(requests, rl)
		}
		return err
	})
	parallel := fs.Bool("parallel", false, "with --request: send the requests all at once rather than one after the other")
	_ = fs.Parse(os.Args[1:])
	if len(requests) > 0 {
		sendRequests(context.Background(), newRequestClient(opts.Timeout), requests, *parallel, os.Stdout)
		return
	}
	if err := opts.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "traffic:", err)
		os.Exit(2)
	}

	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if *healthAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintln(w, `{"status":"ok"}`)
		})
		srv := &http.Server{Addr: *healthAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil {
				logger.Error("health server failed", "addr", *healthAddr, "err", err)
				os.Exit(1)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger.Info("sending traffic", "orderURL", opts.OrderURL, "userURL", opts.UserURL, "rps", opts.RPS, "duration", opts.Duration.String())
	if _, err := run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "traffic:", err)
		os.Exit(1)
	}
}
