// Package cmd is the command line of mesh-proxy: it starts the proxy.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/internal/cmdutil"
	"github.com/lightmesh/lightmesh/proxy/admin"
	"github.com/lightmesh/lightmesh/proxy/config"
	"github.com/lightmesh/lightmesh/proxy/dataplane"
	"github.com/lightmesh/lightmesh/proxy/destination"
	"github.com/lightmesh/lightmesh/proxy/discovery"
	"github.com/lightmesh/lightmesh/proxy/h1"
	proxyidentity "github.com/lightmesh/lightmesh/proxy/identity"
	"github.com/lightmesh/lightmesh/proxy/meshtls"
	"github.com/lightmesh/lightmesh/proxy/metrics"
	"github.com/lightmesh/lightmesh/proxy/standalone"
	"github.com/lightmesh/lightmesh/proxy/tracing"
)

// NewRootCmd returns the mesh-proxy command with its subcommands. Without a subcommand it
// runs the proxy, configured by MESH_PROXY_* environment variables (see proxy/README.md).
func NewRootCmd() *cobra.Command {
	var envoyConfig string
	var allowUnsupported bool
	root := &cobra.Command{
		Use:   "mesh-proxy",
		Short: "the lightmesh sidecar and gateway proxy",
		Long: `mesh-proxy carries every TCP connection of a meshed pod: outbound on 127.0.0.1:4140,
inbound on 4143, admin on 4191. It is configured by MESH_PROXY_* environment variables;
proxy/README.md lists them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if envoyConfig != "" {
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
				defer stop()
				return standalone.RunFile(ctx, envoyConfig, allowUnsupported, cmd.ErrOrStderr())
			}
			cfg, err := config.Load(os.LookupEnv)
			if err != nil {
				return fmt.Errorf("refusing to start: %w", err)
			}
			if err := execWithPolling(cfg.SchedulerPoll); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v; running with the Go runtime's default scheduler\n", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return Run(ctx, cfg, cmd.ErrOrStderr())
		},
	}
	root.Flags().StringVar(&envoyConfig, "config", "", "run standalone from this Envoy v3 static bootstrap (YAML or JSON) instead of as a sidecar; see proxy/envoy/README.md")
	root.Flags().BoolVar(&allowUnsupported, "allow-unsupported", false, "with --config, warn about unsupported Envoy fields instead of refusing to start")
	root.AddCommand(cmdutil.NewVersionCmd("mesh-proxy"))
	return root
}

// certificateSource starts what gives the proxy its certificate: the controller's identity
// service when cfg.IdentityAddr is set, else the identity files in cfg.IdentityDir.
func certificateSource(ctx context.Context, cfg *config.Config, registry *metrics.Registry, log *slog.Logger) (meshtls.Source, error) {
	if cfg.IdentityAddr != "" {
		client, err := proxyidentity.NewClient(proxyidentity.Options{
			Addr:         cfg.IdentityAddr,
			ServerName:   cfg.IdentityServerName,
			Identity:     cfg.Identity,
			TokenFile:    cfg.IdentityTokenFile,
			TrustAnchors: cfg.TrustAnchors,
			Registerer:   registry.Registerer(),
			Logger:       log,
		})
		if err != nil {
			return nil, fmt.Errorf("refusing to start: %w", err)
		}
		go func() {
			if err := client.Run(ctx); err != nil {
				log.Error("the identity client stopped: the proxy will not become ready", "error", err)
			}
		}()
		log.Info("asking the identity service for a certificate", "identity", cfg.Identity.String(), "addr", cfg.IdentityAddr)
		return client, nil
	}
	src, err := meshtls.NewFileSource(meshtls.FileSourceOptions{Dir: cfg.IdentityDir, ReloadInterval: cfg.IdentityReloadInterval, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("refusing to start: %w (or set MESH_PROXY_IDENTITY_ADDR to get a certificate from the controller, or MESH_PROXY_IDENTITY_DISABLED=true to run without mTLS)", err)
	}
	go src.Run(ctx)
	log.Info("identity loaded", "identity", src.Identity().String())
	return src, nil
}

// Run runs the proxy until ctx ends (SIGTERM) or POST /shutdown, then shuts it down
// gracefully within cfg.ShutdownGrace. Logs go to logOut.
func Run(ctx context.Context, cfg *config.Config, logOut io.Writer) error {
	var handler slog.Handler = slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: cfg.LogLevel})
	if cfg.LogFormat == "plain" || cfg.LogFormat == "text" {
		handler = slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	log := slog.New(handler)
	workers := runtime.GOMAXPROCS(0)
	if cfg.GatewayListeners == nil {
		workers = setSidecarWorkers()
	}
	log.Info("runtime", "workers", workers, "godebug", os.Getenv("GODEBUG"))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	registry := metrics.New()
	var tlsConf *meshtls.TLS
	var src meshtls.Source
	if !cfg.IdentityDisabled {
		var err error
		if src, err = certificateSource(ctx, cfg, registry, log); err != nil {
			return err
		}
		if tlsConf, err = meshtls.New(meshtls.Options{Source: src, TrustDomain: cfg.TrustDomain}); err != nil {
			return err
		}
	} else {
		log.Warn("identity is disabled: traffic between proxies is plaintext")
	}
	opts := dataplane.Options{
		InboundAddr: cfg.InboundAddr, OutboundAddr: cfg.OutboundAddr, TLS: tlsConf,
		OpaquePorts: cfg.OpaquePorts, DetectTimeout: cfg.DetectTimeout, ConnectTimeout: cfg.ConnectTimeout,
		ShutdownGrace: cfg.ShutdownGrace, PeerInboundPort: cfg.PeerInboundPort, MaxInFlightRequests: cfg.MaxInFlightRequests,
		CoalesceWrites: workers == 1,
		HTTP: h1.Options{
			MaxHeaderBytes: cfg.MaxHeaderBytes, MaxHeaderCount: cfg.MaxHeaderCount,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout,
			BodyReadTimeout: cfg.BodyReadTimeout,
		},
		Logger:  log,
		Metrics: registry,
	}
	if cfg.Tracing != nil {
		tracer, err := tracing.New(*cfg.Tracing, log)
		if err != nil {
			return err
		}
		defer func() {
			if err := tracer.Close(); err != nil {
				log.Warn("flushing the last spans failed", "err", err)
			}
		}()
		opts.Tracer = tracer
		log.Info("tracing", "agent", cfg.Tracing.LocalAgentHostPort, "sampler", cfg.Tracing.SamplerType, "param", cfg.Tracing.SamplerParam, "service", cfg.Tracing.ServiceName)
	}
	var resolvers discovery.Chain
	if cfg.Destinations != nil {
		resolvers = append(resolvers, cfg.Destinations)
	}
	if cfg.DestinationAddr != "" && src == nil {
		log.Warn("identity is disabled: the destination service (mTLS only) is not used; outbound traffic goes to its original destination",
			"destinationAddr", cfg.DestinationAddr)
	}
	var readyDetail func() string
	if cfg.DestinationAddr != "" && src != nil {
		client, err := destination.New(ctx, destination.Options{
			Addr: cfg.DestinationAddr, ServerName: cfg.DestinationServerName, Source: src,
			ContextToken: cfg.PodNamespace + "/" + cfg.PodName, Logger: log,
			PodNamespace: cfg.PodNamespace, PodName: cfg.PodName,
			Gateway: cfg.GatewayListeners != nil, Registerer: registry.Registerer(),
		})
		if err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
		readyDetail = client.ReadyDetail
		resolvers = append(resolvers, client)
		opts.Balancer = &discovery.PeakEWMA{}
		opts.Policy = client
		if cfg.GatewayListeners != nil {
			opts.Gateway = &dataplane.GatewayOptions{Listeners: cfg.GatewayListeners, Policy: client.Gateway}
			log.Info("running as an ingress gateway", "listeners", cfg.GatewayListeners)
		}
		if cfg.PodNamespace == "" || cfg.PodName == "" {
			log.Warn("MESH_PROXY_POD_NAMESPACE or MESH_PROXY_POD_NAME is not set: no inbound policy (PeerAuthentication, AuthorizationPolicy) is applied")
		}
		log.Info("resolving outbound traffic and policy through the destination service", "addr", cfg.DestinationAddr)
	}
	if cfg.GatewayListeners != nil && opts.Gateway == nil {
		return errors.New("refusing to start: MESH_PROXY_INGRESS_MODE needs the destination service (MESH_PROXY_DESTINATION_ADDR) and identity, and MESH_PROXY_POD_NAMESPACE and MESH_PROXY_POD_NAME, to learn its Gateways")
	}
	switch len(resolvers) {
	case 0:
	case 1:
		opts.Resolver = resolvers[0]
	default:
		opts.Resolver = resolvers
	}
	tapSrv, err := newTapServer(cfg, tlsConf, registry, log)
	if err != nil {
		return err
	}
	if tapSrv != nil {
		opts.Tap = tapSrv.Hub()
	}
	proxy, err := dataplane.New(opts)
	if err != nil {
		return err
	}
	adminOpts := admin.Options{
		Addr:     cfg.AdminAddr,
		Metrics:  proxy.Metrics().Handler(),
		Shutdown: cancel,
		PodIP:    cfg.PodIP,
		PodName:  cfg.PodName,
		Pprof:    cfg.Pprof,
		Logger:   log,
		Ready: func() bool {
			return proxy.Listening() && (tlsConf == nil || tlsConf.Ready())
		},
		ReadyDetail: func() string {
			var parts []string
			if tlsConf != nil {
				if problem := tlsConf.Problem(); problem != "" {
					parts = append(parts, problem)
				}
			}
			if readyDetail != nil {
				if d := readyDetail(); d != "" {
					parts = append(parts, d)
				}
			}
			return strings.Join(parts, "; ")
		},
	}
	if tlsConf != nil {
		adminOpts.Certificate = tlsConf.Certificate
	}
	adminSrv, err := admin.New(adminOpts)
	if err != nil {
		return err
	}
	if err := adminSrv.Start(); err != nil {
		return err
	}
	if err := proxy.Start(); err != nil {
		_ = adminSrv.Shutdown(context.Background())
		return err
	}
	if tapSrv != nil {
		if err := tapSrv.Start(); err != nil {
			_ = adminSrv.Shutdown(context.Background())
			_ = proxy.Shutdown(context.Background())
			return err
		}
		defer tapSrv.Shutdown()
		log.Info("tap listening", "addr", tapSrv.Addr().String(), "allowed", cfg.TapIdentity.String())
	}
	log.Info("admin listening", "addr", adminSrv.Addr().String())
	<-ctx.Done()

	log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	graceCtx, graceCancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer graceCancel()
	err = proxy.Shutdown(graceCtx)
	adminCtx, adminCancel := context.WithTimeout(context.Background(), time.Second)
	defer adminCancel()
	_ = adminSrv.Shutdown(adminCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("connections were still open at the end of the grace period and were closed")
		return nil
	}
	log.Info("stopped")
	return err
}
