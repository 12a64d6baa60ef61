package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lightmesh/lightmesh/controller/admin"
	"github.com/lightmesh/lightmesh/controller/identity"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// DefaultIssuerDir is where the install manifests mount the issuer Secret.
const DefaultIssuerDir = "/var/run/lightmesh/identity/issuer"

// identityOptions are the flags of `mesh-controller identity`.
type identityOptions struct {
	addr             string
	adminAddr        string
	trustDomain      string
	trustAnchorsFile string
	issuerDir        string
	leafLifetime     time.Duration
	clockSkew        time.Duration
	tokenAudience    string
	kubeconfig       string
	servingName      string
	reloadInterval   time.Duration
	logLevel         string
}

func newIdentityOptions() *identityOptions {
	return &identityOptions{
		addr:           ":8080",
		adminAddr:      admin.DefaultAddr,
		trustDomain:    meshid.DefaultTrustDomain,
		issuerDir:      DefaultIssuerDir,
		leafLifetime:   meshid.DefaultLeafLifetime,
		clockSkew:      meshid.DefaultClockSkewAllowance,
		tokenAudience:  identity.DefaultTokenAudience,
		servingName:    identity.DefaultServingName,
		reloadInterval: identity.DefaultReloadInterval,
		logLevel:       "info",
	}
}

func (o *identityOptions) validate() error {
	if o.addr == "" || o.adminAddr == "" {
		return errors.New("--addr and --admin-addr must not be empty: give host:port or :port")
	}
	if o.issuerDir == "" {
		return errors.New("--issuer-dir is empty: give the directory where the issuer Secret (tls.crt, tls.key) is mounted")
	}
	if err := meshid.ValidateTrustDomain(o.trustDomain); err != nil {
		return fmt.Errorf("--trust-domain: %w", err)
	}
	if o.leafLifetime < time.Minute {
		return fmt.Errorf("--leaf-lifetime %s is too short: give at least 1m", o.leafLifetime)
	}
	if o.clockSkew < 0 || o.clockSkew >= o.leafLifetime {
		return fmt.Errorf("--clock-skew %s must be at least 0 and shorter than --leaf-lifetime %s", o.clockSkew, o.leafLifetime)
	}
	if o.reloadInterval < 100*time.Millisecond {
		return fmt.Errorf("--reload-interval %s is too short: give at least 100ms (the default is %s)", o.reloadInterval, identity.DefaultReloadInterval)
	}
	if o.tokenAudience == "" || o.servingName == "" {
		return errors.New("--token-audience and --serving-name must not be empty")
	}
	if _, err := parseLogLevel(o.logLevel); err != nil {
		return err
	}
	return nil
}

func newCmdIdentity() *cobra.Command {
	opts := newIdentityOptions()
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Run the identity service: issue workload certificates to proxies over gRPC",
		Long: `Run the identity service. Proxies send it a CSR and their projected ServiceAccount token;
it checks the token with a Kubernetes TokenReview and returns a certificate for the token's
ServiceAccount, signed by the issuer read (and hot-reloaded) from --issuer-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUntilSignal(cmd, opts.validate, func(ctx context.Context, out, errOut io.Writer) error {
				return runIdentity(ctx, out, errOut, opts)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.addr, "addr", opts.addr, "address of the gRPC (TLS) identity service")
	f.StringVar(&opts.adminAddr, "admin-addr", opts.adminAddr, "address of the admin server (/live, /ready, /metrics)")
	f.StringVar(&opts.trustDomain, "trust-domain", opts.trustDomain, "trust domain of the identities issued")
	f.StringVar(&opts.trustAnchorsFile, "trust-anchors-file", "", "PEM bundle of trust anchors (default <issuer-dir>/ca.crt)")
	f.StringVar(&opts.issuerDir, "issuer-dir", opts.issuerDir, "directory of the issuer certificate and key (tls.crt, tls.key); polled for changes")
	f.DurationVar(&opts.leafLifetime, "leaf-lifetime", opts.leafLifetime, "validity of workload certificates")
	f.DurationVar(&opts.clockSkew, "clock-skew", opts.clockSkew, "how far in the past certificates' NotBefore is set")
	f.StringVar(&opts.tokenAudience, "token-audience", opts.tokenAudience, "audience the proxies' ServiceAccount tokens must have")
	f.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.StringVar(&opts.servingName, "serving-name", opts.servingName, "DNS name of the service's own serving certificate")
	f.DurationVar(&opts.reloadInterval, "reload-interval", opts.reloadInterval, "how often the issuer files are read for changes")
	f.StringVar(&opts.logLevel, "log-level", opts.logLevel, "log level: debug, info, warn or error")
	return cmd
}

func parseLogLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: use debug, info, warn or error", s)
	}
	return level, nil
}

// runIdentity runs the identity service and its admin server until ctx ends. Logs go to
// errOut; out is unused (the service prints no result).
func runIdentity(ctx context.Context, _, errOut io.Writer, opts *identityOptions) error {
	log, err := newLogger(errOut, opts.logLevel, "identity")
	if err != nil {
		return err
	}

	client, err := kubeClient(opts.kubeconfig, "identity")
	if err != nil {
		return err
	}

	var events identity.EventRecorder
	podName, podNamespace := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
	if podName != "" && podNamespace != "" {
		events = &identity.KubeEventRecorder{Client: client, Namespace: podNamespace, Pod: podName, UID: os.Getenv("POD_UID")}
	} else {
		log.Warn("POD_NAME or POD_NAMESPACE is not set: issuer changes are logged but not recorded as Kubernetes Events; set them with the downward API")
	}

	registry := newRegistry()
	service, err := identity.New(identity.Options{
		TrustDomain:      opts.trustDomain,
		IssuerDir:        opts.issuerDir,
		TrustAnchorsFile: opts.trustAnchorsFile,
		LeafLifetime:     opts.leafLifetime,
		ClockSkew:        opts.clockSkew,
		TokenAudience:    opts.tokenAudience,
		ServingName:      opts.servingName,
		ReloadInterval:   opts.reloadInterval,
		Reviewer:         identity.KubeTokenReviewer{Client: client},
		Events:           events,
		Logger:           log,
		Registerer:       registry,
	})
	if err != nil {
		return err
	}

	return serveWithAdmin(ctx, log, server{
		name: "identity service", addr: opts.addr, adminAddr: opts.adminAddr,
		registry: registry, ready: service.Ready, serve: service.Serve,
	})
}

func kubeConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		config, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes configuration: %w; outside a cluster pass --kubeconfig", err)
		}
		return config, nil
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	return config, nil
}
