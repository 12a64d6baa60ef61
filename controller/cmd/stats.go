package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/controller/stats"
)

// statsOptions are the flags of `mesh-controller stats`.
type statsOptions struct {
	addr             string
	adminAddr        string
	scrapeInterval   time.Duration
	scrapeTimeout    time.Duration
	concurrency      int
	kubeconfig       string
	cacheSyncTimeout time.Duration
	logLevel         string
	tap              *tapOptions
	// prometheusURL, when set, answers from Prometheus instead of scraping.
	prometheusURL     string
	prometheusTimeout time.Duration
}

func newStatsOptions() *statsOptions {
	return &statsOptions{
		addr:              ":8085",
		adminAddr:         ":9997",
		scrapeInterval:    stats.DefaultScrapeInterval,
		scrapeTimeout:     stats.DefaultScrapeTimeout,
		concurrency:       stats.DefaultConcurrency,
		cacheSyncTimeout:  2 * time.Minute,
		logLevel:          "info",
		tap:               newTapOptions(),
		prometheusTimeout: stats.DefaultPrometheusTimeout,
	}
}

func (o *statsOptions) validate() error {
	if o.addr == "" || o.adminAddr == "" {
		return errors.New("--addr and --admin-addr must not be empty: give host:port or :port")
	}
	if o.scrapeInterval < time.Second {
		return fmt.Errorf("--scrape-interval %s is too short: give at least 1s", o.scrapeInterval)
	}
	if o.scrapeTimeout <= 0 || o.scrapeTimeout > o.scrapeInterval {
		return fmt.Errorf("--scrape-timeout %s: give a positive duration no longer than --scrape-interval", o.scrapeTimeout)
	}
	if o.concurrency < 1 {
		return errors.New("--concurrency must be at least 1")
	}
	if o.cacheSyncTimeout <= 0 {
		return errors.New("--cache-sync-timeout must be positive")
	}
	if o.prometheusTimeout <= 0 || o.prometheusTimeout > 25*time.Second {
		return fmt.Errorf("--prometheus-timeout %s: give a positive duration up to 25s (the API answers within 30s)", o.prometheusTimeout)
	}
	if _, err := parseLogLevel(o.logLevel); err != nil {
		return err
	}
	return o.tap.validate()
}

func newCmdStats() *cobra.Command {
	opts := newStatsOptions()
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Run the stats service: scrape the meshed pods' proxies and answer mesh stat",
		Long: `Run the stats service. It watches pods, scrapes the admin /metrics (port 4191) of every
running meshed pod each --scrape-interval, keeps 15 minutes of history in memory and serves
GET /api/v1/stat?resource=deployment&namespace=NS&name=NAME&window=1m on --addr as JSON:
meshed pods, success rate, requests per second, latency p50/p95/p99 and open TCP connections
of each deployment, statefulset, daemonset, job, pod or namespace; GET /api/v1/edges, who talks
to whom; and GET /api/v1/tap, the live requests of a resource's pods, read from each proxy's tap
port (4190) over mTLS with a certificate the controller issues itself from --issuer-dir. With
--prometheus-url the stat and edges answers come from Prometheus queries instead of its own
scrapes. mesh stat, edges, tap, top and dashboard reach it through the API server's service proxy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUntilSignal(cmd, opts.validate, func(ctx context.Context, out, errOut io.Writer) error {
				return runStats(ctx, out, errOut, opts)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.addr, "addr", opts.addr, "address of the stats HTTP API")
	f.StringVar(&opts.adminAddr, "admin-addr", opts.adminAddr, "address of the admin server (/live, /ready, /metrics)")
	f.DurationVar(&opts.scrapeInterval, "scrape-interval", opts.scrapeInterval, "how often every meshed pod's proxy is scraped")
	f.DurationVar(&opts.scrapeTimeout, "scrape-timeout", opts.scrapeTimeout, "how long one scrape may take")
	f.IntVar(&opts.concurrency, "concurrency", opts.concurrency, "how many proxies are scraped at once")
	f.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.DurationVar(&opts.cacheSyncTimeout, "cache-sync-timeout", opts.cacheSyncTimeout, "how long to wait for the Pod cache at start")
	f.StringVar(&opts.logLevel, "log-level", opts.logLevel, "log level: debug, info, warn or error")
	opts.tap.addFlags(f)
	f.StringVar(&opts.prometheusURL, "prometheus-url", "", "answer from this Prometheus (base URL, such as http://prometheus.lightmesh.svc:9090) instead of scraping the proxies")
	f.DurationVar(&opts.prometheusTimeout, "prometheus-timeout", opts.prometheusTimeout, "how long one query to Prometheus may take")
	return cmd
}

// runStats runs the stats service and its admin server until ctx ends. Logs go to errOut.
func runStats(ctx context.Context, _, errOut io.Writer, opts *statsOptions) error {
	log, err := newLogger(errOut, opts.logLevel, "stats")
	if err != nil {
		return err
	}
	client, err := kubeClient(opts.kubeconfig, "stats")
	if err != nil {
		return err
	}
	service, err := stats.New(stats.Options{
		Client:        client,
		ScrapeTimeout: opts.scrapeTimeout,
		Concurrency:   opts.concurrency,
		Logger:        log,
		PrometheusURL: opts.prometheusURL, PrometheusTimeout: opts.prometheusTimeout,
	})
	if err != nil {
		return err
	}
	defer service.Shutdown()
	return serveWithAdmin(ctx, log, server{
		name: "stats service", addr: opts.addr, adminAddr: opts.adminAddr,
		registry: newRegistry(), ready: service.Synced,
		serve: func(ctx context.Context, lis net.Listener) error {
			if err := service.Start(ctx, opts.cacheSyncTimeout); err != nil {
				_ = lis.Close()
				return err
			}
			ticker := time.NewTicker(opts.scrapeInterval)
			defer ticker.Stop()
			go service.Run(ctx, ticker.C)
			log.Info("stats service listening", "addr", lis.Addr().String())
			handler, err := withTap(service.Handler(), opts.tap, client, log)
			if err != nil {
				return err
			}
			return serveHTTP(ctx, lis, handler)
		},
	})
}
