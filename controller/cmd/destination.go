package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/lightmesh/lightmesh/controller/destination"
	"github.com/lightmesh/lightmesh/controller/identity"
	"github.com/lightmesh/lightmesh/controller/policy"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/version"
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
	// policy: watch Istio and Gateway API resources and stream their policy.
	policy              bool
	policyRetryInterval time.Duration
	policyStatus        bool
	dnsServers          []string
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
		policy:                true,
		policyRetryInterval:   policy.DefaultRetryInterval,
		policyStatus:          true,
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
	if o.policyRetryInterval < time.Second {
		return fmt.Errorf("--policy-retry-interval %s is too short: give at least 1s", o.policyRetryInterval)
	}
	for _, s := range o.dnsServers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("--dns-server %q: write host:port, for example 10.96.0.10:53", s)
		}
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
		Short: "Run the destination service: stream service endpoints, their identities and traffic policy to proxies",
		Long: `Run the destination service. Proxies subscribe (gRPC over mTLS, with their workload
certificate) to an authority such as web.shop.svc.cluster.local:80, a ClusterIP:port or a
pod IP:port and receive its ready endpoints, each with the SPIFFE ID of its proxy when the pod
is meshed by this control plane; ExternalName services are resolved with DNS. The serving
certificate (destination.<ns>.svc.<cluster-domain>) is issued by the issuer read from
--issuer-dir.

With --policy (the default) it also watches Istio VirtualServices, DestinationRules,
Gateways, PeerAuthentications, AuthorizationPolicies and Gateway API HTTPRoutes, translates
them to lightmesh's policy model and streams each proxy its outbound policy (per authority)
and inbound policy (per pod). Unsupported fields are reported in the resources' status
(--policy-status).`,
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
	f.BoolVar(&opts.policy, "policy", opts.policy, "watch Istio and Gateway API resources and stream their policy to proxies")
	f.DurationVar(&opts.policyRetryInterval, "policy-retry-interval", opts.policyRetryInterval, "how often a policy kind whose CRD is not installed is looked for again")
	f.BoolVar(&opts.policyStatus, "policy-status", opts.policyStatus, "write Accepted/Reconciled (Istio) and parents (HTTPRoute) status conditions on the policy resources")
	f.StringSliceVar(&opts.dnsServers, "dns-server", nil, "DNS server (host:port) resolving ExternalName services; repeatable (default: the servers of /etc/resolv.conf)")
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
	var watcher *policy.Watcher
	if opts.policy {
		if watcher, err = newPolicyWatcher(opts, log); err != nil {
			return err
		}
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
		Policy:                policySource(watcher),
		DNSServers:            opts.dnsServers,
	})
	if err != nil {
		return err
	}
	ready := informers.Synced
	if watcher != nil {
		ready = func() bool { return informers.Synced() && watcher.Synced() }
		go func() {
			if err := watcher.Run(ctx); err != nil {
				log.Error("the policy watcher stopped", "error", err)
			}
		}()
	}

	ticker := time.NewTicker(opts.reloadInterval)
	defer ticker.Stop()
	go issuer.Watch(ctx, ticker.C)
	defer informers.Shutdown()
	return serveWithAdmin(ctx, log, server{
		name: "destination service", addr: opts.addr, adminAddr: opts.adminAddr,
		registry: registry, ready: ready,
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

// newPolicyWatcher returns the watcher of the policy resources, with its own clients.
func newPolicyWatcher(opts *destinationOptions, log *slog.Logger) (*policy.Watcher, error) {
	config, err := kubeConfig(opts.kubeconfig)
	if err != nil {
		return nil, err
	}
	config.UserAgent = "mesh-controller-policy/" + version.Version
	dyn, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery client: %w", err)
	}
	return policy.New(policy.Options{
		Client: dyn, Discovery: disc, DomainSuffix: opts.clusterDomain,
		RetryInterval: opts.policyRetryInterval, WriteStatus: opts.policyStatus,
		Logger: log.With("component", "policy"), GatewayNamespace: opts.controlPlaneNamespace,
	})
}

// policySource avoids a typed nil in the interface when there is no watcher.
func policySource(w *policy.Watcher) destination.PolicySource {
	if w == nil {
		return nil
	}
	return w
}
