package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/lightmesh/lightmesh/controller/tap"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	internaltap "github.com/lightmesh/lightmesh/internal/tap"
)

// tapOptions are the stats service's flags for the tap API: the issuer the controller
// certifies itself with, and the identity it taps proxies as.
type tapOptions struct {
	issuerDir, trustAnchorsFile string
	trustDomain                 string
	controlPlaneNamespace       string
	serviceAccount              string
}

func newTapOptions() *tapOptions {
	return &tapOptions{trustDomain: meshid.DefaultTrustDomain, controlPlaneNamespace: "lightmesh", serviceAccount: "lightmesh-controller"}
}

func (o *tapOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.issuerDir, "issuer-dir", "", "directory of the issuer (tls.crt, tls.key) the controller certifies its own identity with, to tap proxies (mesh tap); empty: no tap API")
	f.StringVar(&o.trustAnchorsFile, "trust-anchors-file", "", "PEM bundle of trust anchors (default <issuer-dir>/ca.crt)")
	f.StringVar(&o.trustDomain, "trust-domain", o.trustDomain, "trust domain of the mesh's identities")
	f.StringVar(&o.controlPlaneNamespace, "control-plane-namespace", o.controlPlaneNamespace, "the namespace of the controller: with --service-account, its tap identity")
	f.StringVar(&o.serviceAccount, "service-account", o.serviceAccount, "the controller's ServiceAccount: the identity the proxies let tap them")
}

func (o *tapOptions) validate() error {
	if _, err := meshid.NewSpiffeID(o.trustDomain, o.controlPlaneNamespace, o.serviceAccount); err != nil {
		return fmt.Errorf("--trust-domain, --control-plane-namespace, --service-account: %w", err)
	}
	return nil
}

// withTap returns statsHandler with the tap API at internal/tap.APIPath. Without an issuer
// the tap API answers 503 saying so.
func withTap(statsHandler http.Handler, o *tapOptions, client kubernetes.Interface, log *slog.Logger) (http.Handler, error) {
	id, err := meshid.NewSpiffeID(o.trustDomain, o.controlPlaneNamespace, o.serviceAccount)
	if err != nil {
		return nil, err
	}
	self := &tap.SelfIssued{IssuerDir: o.issuerDir, TrustAnchorsFile: o.trustAnchorsFile, ID: id}
	api, err := tap.New(tap.Options{
		Pods: tap.KubePods(client), Certificate: self.Certificate,
		TrustDomain: o.trustDomain, Logger: log.With("component", "tap"),
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(internaltap.APIPath, api)
	mux.Handle("/", statsHandler)
	return mux, nil
}

// serveHTTP serves handler on lis until ctx ends, as stats.Service.Serve does (the tap API
// extends its own write deadline to the tap's duration).
func serveHTTP(ctx context.Context, lis net.Listener, handler http.Handler) error {
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(lis) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		_ = server.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
