package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/lightmesh/lightmesh/controller/destination"
	"github.com/lightmesh/lightmesh/controller/identity"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// destinationOptions are the flags of `mesh-controller destination`.
type destinationOptions struct {
	addr                  string
	adminAddr             string
	trustDomain           string
	trustAnchorsFile      string
	issuerDir             string
	controlPlaneNamespace string
	clusterDomain         string
	kubeconfig            string
	servingName           string
	reloadInterval        time.Duration
	cacheSyncTimeout      time.Duration
	logLevel              string
}

func newDestinationOptions() *destinationOptions {
	return &destinationOptions{
		addr:                  ":8086",
		adminAddr:             ":9996",
		trustDomain:           meshid.DefaultTrustDomain,
		issuerDir:             DefaultIssuerDir,
		controlPlaneNamespace: destination.DefaultControlPlaneNamespace,
		clusterDomain:         destination.DefaultClusterDomain,
		reloadInterval:        identity.DefaultReloadInterval,
		cacheSyncTimeout:      2 * time.Minute,
		logLevel:              "info",
	}
}

func (o *destinationOptions) validate() error {
	if o.addr == "" || o.adminAddr == "" {
		return errors.New("--addr and --admin-addr must not be empty: give host:port or :port")
	}
	if o.issuerDir == "" {
		return errors.New("--issuer-dir is empty: give the directory where the issuer Secret (tls.crt, tls.key) is mounted")
	}
	if err := meshid.ValidateTrustDomain(o.trustDomain); err != nil {
		return fmt.Errorf("--trust-domain: %w", err)
	}
	if o.controlPlaneNamespace == "" || o.clusterDomain == "" {
		return errors.New("--control-plane-namespace and --cluster-domain must not be empty")
	}
	if o.reloadInterval < 100*time.Millisecond {
		return fmt.Errorf("--reload-interval %s is too short: give at least 100ms", o.reloadInterval)
	}
	if o.cacheSyncTimeout <= 0 {
		return errors.New("--cache-sync-timeout must be positive")
	}
	if _, err := parseLogLevel(o.logLevel); err != nil {
		return err
	}
	return nil
}

// servingNameOrDefault is destination.<control-plane-namespace>.svc.<cluster-domain> unless
// --serving-name is given.
func (o *destinationOptions) servingNameOrDefault() string {
	if o.servingName != "" {
		return o.servingName
	}
	return "destination." + o.controlPlaneNamespace + ".svc." + o.clusterDomain
}

func newCmdDestination() *cobra.Command {
	opts := newDestinationOptions()
	cmd := &cobra.Command{
		Use:   "destination",
		Short: "Run the destination service: stream service endpoints and their identities to proxies",
		Long: `Run the destination service. Proxies subscribe (gRPC over mTLS, with their workload
certificate) to an authority such as web.shop.svc.cluster.local:80 or a ClusterIP:port and
receive its ready endpoints, each with the SPIFFE ID of its proxy when the pod is meshed by this
control plane. The serving certificate (destination.<ns>.svc.<cluster-domain>) is issued by the
issuer read from --issuer-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUntilSignal(cmd, opts.validate, func(ctx context.Context, out, errOut io.Writer) error {
				return runDestination(ctx, out, errOut, opts)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.addr, "addr", opts.addr, "address of the gRPC (mTLS) destination service")
	f.StringVar(&opts.adminAddr, "admin-addr", opts.adminAddr, "address of the admin server (/live, /ready, /metrics)")
	f.StringVar(&opts.trustDomain, "trust-domain", opts.trustDomain, "trust domain of the mesh's identities")
	f.StringVar(&opts.trustAnchorsFile, "trust-anchors-file", "", "PEM bundle of trust anchors (default <issuer-dir>/ca.crt)")
	f.StringVar(&opts.issuerDir, "issuer-dir", opts.issuerDir, "directory of the issuer certificate and key (tls.crt, tls.key) that signs the serving certificate")
	f.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "namespace of this control plane: pods labelled lightmesh.io/control-plane-ns with it get identities")
	f.StringVar(&opts.clusterDomain, "cluster-domain", opts.clusterDomain, "the cluster's DNS domain")
	f.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.StringVar(&opts.servingName, "serving-name", "", "DNS name of the serving certificate (default destination.<control-plane-namespace>.svc.<cluster-domain>)")
	f.DurationVar(&opts.reloadInterval, "reload-interval", opts.reloadInterval, "how often the issuer files are read for changes")
	f.DurationVar(&opts.cacheSyncTimeout, "cache-sync-timeout", opts.cacheSyncTimeout, "how long to wait for the Service, EndpointSlice and Pod caches at start")
	f.StringVar(&opts.logLevel, "log-level", opts.logLevel, "log level: debug, info, warn or error")
	return cmd
}

// refuseTokens is the identity service's token reviewer in the destination process: it only
// uses the issuer for its serving certificate and certifies nothing.
type refuseTokens struct{}

func (refuseTokens) Review(context.Context, string, string) (identity.TokenReview, error) {
	return identity.TokenReview{}, errors.New("the destination service does not certify")
}

// runDestination runs the destination service and its admin server until ctx ends. Logs go
// to errOut.
func runDestination(ctx context.Context, _, errOut io.Writer, opts *destinationOptions) error {
	log, err := newLogger(errOut, opts.logLevel, "destination")
	if err != nil {
		return err
	}
	client, err := kubeClient(opts.kubeconfig, "destination")
	if err != nil {
		return err
	}
	// The issuer gives the serving certificate (renewed by Watch) and the trust anchors that
	// client certificates must chain to.
	issuer, err := identity.New(identity.Options{
		TrustDomain:      opts.trustDomain,
		IssuerDir:        opts.issuerDir,
		TrustAnchorsFile: opts.trustAnchorsFile,
		ServingName:      opts.servingNameOrDefault(),
		ReloadInterval:   opts.reloadInterval,
		Reviewer:         refuseTokens{},
		Logger:           log,
	})
	if err != nil {
		return err
	}
	informers, err := destination.NewInformers(client)
	if err != nil {
		return err
	}
	registry := newRegistry()
	service, err := destination.New(destination.Options{
		Informers:             informers,
		ControlPlaneNamespace: opts.controlPlaneNamespace,
		TrustDomain:           opts.trustDomain,
		ClusterDomain:         opts.clusterDomain,
		Logger:                log,
		Registerer:            registry,
	})
	if err != nil {
		return err
	}

	ticker := time.NewTicker(opts.reloadInterval)
	defer ticker.Stop()
	go issuer.Watch(ctx, ticker.C)
	defer informers.Shutdown()
	return serveWithAdmin(ctx, log, server{
		name: "destination service", addr: opts.addr, adminAddr: opts.adminAddr,
		registry: registry, ready: informers.Synced,
		serve: func(ctx context.Context, lis net.Listener) error {
			if err := informers.Start(ctx, opts.cacheSyncTimeout); err != nil {
				_ = lis.Close()
				return err
			}
			tlsConfig := destination.RequireClientIdentity(issuer.TLSConfig(), issuer.TrustAnchors, opts.trustDomain, nil)
			return service.Serve(ctx, lis, tlsConfig)
		},
	})
}
