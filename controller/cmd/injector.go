package cmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/lightmesh/lightmesh/controller/injector"
	"github.com/lightmesh/lightmesh/install"
)

// injectorOptions are the flags of `mesh-controller injector`.
type injectorOptions struct {
	addr                  string
	adminAddr             string
	tlsDir                string
	controlPlaneNamespace string
	kubeconfig            string
	configTTL             time.Duration
	logLevel              string
}

func newInjectorOptions() *injectorOptions {
	return &injectorOptions{
		addr:                  ":8443",
		adminAddr:             ":9995",
		tlsDir:                install.WebhookTLSDir,
		controlPlaneNamespace: install.DefaultValues().Namespace,
		configTTL:             injector.DefaultConfigTTL,
		logLevel:              "info",
	}
}

func (o *injectorOptions) validate() error {
	if o.addr == "" || o.adminAddr == "" {
		return errors.New("--addr and --admin-addr must not be empty: give host:port or :port")
	}
	if o.tlsDir == "" {
		return errors.New("--tls-dir is empty: give the directory where the webhook's serving certificate (tls.crt, tls.key) is mounted")
	}
	if errs := validation.IsDNS1123Label(o.controlPlaneNamespace); len(errs) > 0 {
		return fmt.Errorf("--control-plane-namespace %q: %s", o.controlPlaneNamespace, strings.Join(errs, "; "))
	}
	if o.configTTL < time.Second {
		return fmt.Errorf("--config-ttl %s is too short: give at least 1s", o.configTTL)
	}
	_, err := parseLogLevel(o.logLevel)
	return err
}

func newCmdInjector() *cobra.Command {
	opts := newInjectorOptions()
	cmd := &cobra.Command{
		Use:   "injector",
		Short: "Run the proxy injector: the mutating admission webhook that adds the proxy to pods",
		Long: `Run the proxy injector, a mutating admission webhook (HTTPS, path /inject). The API server
sends it the pods being created; it adds the lightmesh proxy, exactly as mesh inject does, to
those annotated lightmesh.io/inject: enabled (or in a namespace annotated so), using the
installation's configuration from the lightmesh-config ConfigMap of --control-plane-namespace.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUntilSignal(cmd, opts.validate, func(ctx context.Context, out, errOut io.Writer) error {
				return runInjector(ctx, out, errOut, opts)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.addr, "addr", opts.addr, "address of the webhook (HTTPS)")
	f.StringVar(&opts.adminAddr, "admin-addr", opts.adminAddr, "address of the admin server (/live, /ready, /metrics)")
	f.StringVar(&opts.tlsDir, "tls-dir", opts.tlsDir, "directory of the webhook's serving certificate and key (tls.crt, tls.key); read again every 30s")
	f.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace lightmesh is installed in (its lightmesh-config is read; its pods are never injected)")
	f.StringVar(&opts.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.DurationVar(&opts.configTTL, "config-ttl", opts.configTTL, "how long the configuration read from lightmesh-config is kept")
	f.StringVar(&opts.logLevel, "log-level", opts.logLevel, "log level: debug, info, warn or error")
	return cmd
}

// runInjector serves the webhook and its admin server until ctx ends. Logs go to errOut.
func runInjector(ctx context.Context, _, errOut io.Writer, opts *injectorOptions) error {
	log, err := newLogger(errOut, opts.logLevel, "injector")
	if err != nil {
		return err
	}

	certs := &injector.CertificateFiles{Dir: opts.tlsDir, Logger: log}
	if err := certs.Load(); err != nil {
		return fmt.Errorf("--tls-dir: %w; mount the %s Secret there", err, install.WebhookSecretName)
	}
	client, err := kubeClient(opts.kubeconfig, "injector")
	if err != nil {
		return err
	}

	registry := newRegistry()
	source := &injector.ConfigMapSource{Client: client.CoreV1(), Namespace: opts.controlPlaneNamespace, TTL: opts.configTTL}
	handler, err := injector.New(injector.Options{
		ControlPlaneNamespace: opts.controlPlaneNamespace,
		Config:                source,
		Namespaces:            injector.KubeNamespaces{Client: client.CoreV1()},
		Logger:                log,
		Registerer:            registry,
	})
	if err != nil {
		return err
	}
	// Ready once the installation's configuration reads: without it nothing can be injected.
	ready := func() bool {
		readCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := source.InjectConfig(readCtx); err != nil {
			log.Warn("not ready", "reason", err.Error())
			return false
		}
		return true
	}

	mux := http.NewServeMux()
	mux.Handle("POST "+install.WebhookPath, handler)
	webhook := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return serveWithAdmin(ctx, log, server{
		name: "webhook server", addr: opts.addr, adminAddr: opts.adminAddr,
		registry: registry, ready: ready,
		serve: func(ctx context.Context, lis net.Listener) error {
			served := make(chan error, 1)
			go func() { served <- webhook.ServeTLS(lis, "", "") }()
			var err error
			select {
			case err = <-served:
			case <-ctx.Done():
				shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
				if err := webhook.Shutdown(shutdownCtx); err != nil {
					_ = webhook.Close()
				}
				stop()
				err = <-served
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
	})
}
