package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/tap"
)

// Output formats of mesh tap.
const (
	tapOutputText = "text"
	tapOutputJSON = "json"
)

// tapOptions are the arguments and flags of `mesh tap` (and of the tap `mesh top` runs).
type tapOptions struct {
	resource, name        string // canonical resource type, and its name ("" for all)
	namespace             string // -n; "" means the kubeconfig's namespace
	max                   int
	duration              time.Duration
	path, method          string
	authority, direction  string
	output                string
	controlPlaneNamespace string
	// newClient returns a core API client without an overall timeout (the tap streams for
	// its duration) and the kubeconfig's namespace; tests give a fake API server.
	newClient func() (rest.Interface, string, error)
}

func newTapOptions() *tapOptions {
	return &tapOptions{
		max: tap.DefaultMax, duration: tap.DefaultDuration, output: tapOutputText,
		controlPlaneNamespace: install.DefaultValues().Namespace,
	}
}

func newTapCmd(kube *kubeOptions) *cobra.Command {
	opts := newTapOptions()
	opts.newClient = func() (rest.Interface, string, error) { return streamClient(kube) }
	return newTapCmdWith(opts)
}

// newTapCmdWith returns the tap command filling opts; tests give their own client.
func newTapCmdWith(opts *tapOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tap RESOURCE [NAME]",
		Short: "Watch the requests of a resource's meshed pods live",
		Long: `Watch, live, the HTTP requests (HTTP/1, HTTP/2, gRPC) that the proxies of a resource's pods
carry: one line per request, inbound (proxy=in) and outbound (proxy=out), with its method,
authority, path, status, latency, and the addresses and mesh identities of both sides.

RESOURCE is TYPE/NAME or TYPE, TYPE one of deployment (deploy), statefulset (sts),
daemonset (ds), job, pod (po) or namespace (ns). The tap ends after --max requests or
--duration, whichever comes first.

The control plane's stats service opens each pod proxy's tap (port 4190, mutual TLS, only
the controller's identity may); you reach it through the Kubernetes API server's service
proxy, so you need permission to get services/proxy in the control plane's namespace.`,
		Example: `  # the next 10 requests of deployment web
  mesh tap deploy/web -n shop --max 10

  # POSTs under /api that web's pods receive, for a minute, as JSON lines
  mesh tap deploy web -n shop --method POST --path /api --direction inbound --duration 1m -o json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.setArgs(args); err != nil {
				return err
			}
			if err := opts.validate(); err != nil {
				return err
			}
			return runTap(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	opts.addFlags(cmd.Flags(), "output format: text (one line per request) or json (one Event per line)")
	return cmd
}

// addFlags adds the flags mesh tap and mesh top share.
func (o *tapOptions) addFlags(flags *pflag.FlagSet, outputHelp string) {
	flags.StringVarP(&o.namespace, "namespace", "n", o.namespace, "the namespace of the resource (default: the kubeconfig's namespace)")
	flags.IntVar(&o.max, "max", o.max, fmt.Sprintf("stop after this many requests (at most %d)", tap.MaxMax))
	flags.DurationVar(&o.duration, "duration", o.duration, fmt.Sprintf("stop after this long (at most %s)", tap.MaxDuration))
	flags.StringVar(&o.path, "path", "", "only requests whose path starts with this")
	flags.StringVar(&o.method, "method", "", "only requests with this method (GET, POST, ...)")
	flags.StringVar(&o.authority, "authority", "", "only requests to this authority (host or host:port)")
	flags.StringVar(&o.direction, "direction", "", "only inbound or only outbound requests (default: both)")
	flags.StringVarP(&o.output, "output", "o", o.output, outputHelp)
	flags.StringVar(&o.controlPlaneNamespace, "control-plane-namespace", o.controlPlaneNamespace, "the namespace lightmesh is installed in")
}

// setArgs reads RESOURCE [NAME]; RESOURCE may be TYPE/NAME.
func (o *tapOptions) setArgs(args []string) error {
	kind, name, hasName := strings.Cut(args[0], "/")
	resource, ok := stats.Resources[strings.ToLower(kind)]
	if !ok {
		return fmt.Errorf("unknown resource type %q: use deployment, statefulset, daemonset, job, pod or namespace, as TYPE/NAME or TYPE NAME", kind)
	}
	o.resource = resource
	switch {
	case hasName && len(args) == 2:
		return fmt.Errorf("give the name once: %s or %s %s", args[0], kind, args[1])
	case hasName:
		o.name = name
	case len(args) == 2:
		o.name = args[1]
	}
	if hasName && name == "" {
		return fmt.Errorf("%q: write TYPE/NAME, such as deploy/web", args[0])
	}
	return nil
}

func (o *tapOptions) validate() error {
	if !slices.Contains([]string{tapOutputText, tapOutputJSON}, o.output) {
		return fmt.Errorf("--output %q: use text or json", o.output)
	}
	if _, err := tap.ParseQuery(o.query()); err != nil {
		return fmt.Errorf("%w (flags --max, --duration, --path, --direction)", err)
	}
	if errs := validation.IsDNS1123Label(o.controlPlaneNamespace); len(errs) > 0 {
		return fmt.Errorf("--control-plane-namespace %q: %s", o.controlPlaneNamespace, strings.Join(errs, "; "))
	}
	return nil
}

// query is the filter and bounds as query parameters.
func (o *tapOptions) query() url.Values {
	return tap.Query{Max: o.max, Duration: o.duration, Filter: tap.Filter{
		PathPrefix: o.path, Method: strings.ToUpper(o.method), Authority: o.authority, Direction: o.direction,
	}}.Values()
}

// streamTap opens the tap API through the API server's service proxy and calls onEvent for
// every event and onError for every stream error line, until the stream ends.
func streamTap(ctx context.Context, opts *tapOptions, onEvent func(tap.Event) error, onError func(tap.StreamError)) error {
	client, kubeNamespace, err := opts.newClient()
	if err != nil {
		return err
	}
	namespace := opts.namespace
	if namespace == "" {
		namespace = kubeNamespace
	}
	resource := opts.resource
	if opts.name != "" {
		resource += "/" + opts.name
	}
	params := opts.query()
	params.Set("namespace", namespace)
	params.Set("resource", resource)
	// The stream lasts the tap's duration; the API server and the controller get a little more.
	ctx, cancel := context.WithTimeout(ctx, opts.duration+kubeTimeout)
	defer cancel()
	newRequest := func() *rest.Request {
		req := client.Get().AbsPath("/api/v1/namespaces", opts.controlPlaneNamespace, "services", statService, "proxy", tap.APIPath)
		for k, values := range params {
			req = req.Param(k, values[0])
		}
		return req
	}
	body, err := newRequest().Stream(ctx)
	if err != nil {
		// The stream's error lost the service's explanation: ask again for it.
		raw, _ := newRequest().DoRaw(ctx)
		return tapError(opts.controlPlaneNamespace, err, raw)
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	for sc.Scan() {
		var probe struct {
			StreamError *string `json:"streamError"`
			Pod         string  `json:"pod"`
		}
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			return fmt.Errorf("the tap API sent something other than JSON lines (%w): is %s/%s lightmesh's stats service?", err, opts.controlPlaneNamespace, statService)
		}
		if probe.StreamError != nil {
			onError(tap.StreamError{StreamError: *probe.StreamError, Pod: probe.Pod})
			continue
		}
		var ev tap.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("the tap API sent a line that is not an event: %w", err)
		}
		if err := onEvent(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("the tap stream broke: %w", err)
	}
	return nil
}

// tapError explains a tap the service refused: with its reason, else as statError does.
func tapError(cpNamespace string, err error, body []byte) error {
	var apiErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		return fmt.Errorf("the tap API refused the tap: %s", apiErr.Error)
	}
	return statError(cpNamespace, err, nil)
}

// runTap streams the tap to out, one line (or JSON object) per request; stream errors (a pod
// that could not be tapped) go to errOut.
func runTap(ctx context.Context, _ io.Reader, out, errOut io.Writer, opts *tapOptions) error {
	enc := json.NewEncoder(out)
	count := 0
	err := streamTap(ctx, opts, func(ev tap.Event) error {
		count++
		if opts.output == tapOutputJSON {
			return enc.Encode(ev)
		}
		_, err := fmt.Fprintln(out, tapLine(ev))
		return err
	}, func(e tap.StreamError) { writeStreamError(errOut, e) })
	if err != nil {
		return err
	}
	if count == 0 {
		_, err = fmt.Fprintf(errOut, "No requests seen within %s.\n", opts.duration)
	}
	return err
}

func writeStreamError(errOut io.Writer, e tap.StreamError) {
	if e.Pod != "" {
		_, _ = fmt.Fprintf(errOut, "tap: pod %s: %s\n", e.Pod, e.StreamError)
		return
	}
	_, _ = fmt.Fprintf(errOut, "tap: %s\n", e.StreamError)
}

// tapLine renders a request as Linkerd's tap does: rsp (or err, when no response was sent),
// the proxy's side, the addresses, whether it was mTLS, the request, status and latency,
// then the identities.
func tapLine(ev tap.Event) string {
	var b strings.Builder
	kind := "rsp"
	if ev.Status == 0 {
		kind = "err"
	}
	proxy, secured := "out", ev.DestinationIdentity != ""
	if ev.Direction == tap.Inbound {
		proxy, secured = "in", ev.SourceIdentity != ""
	}
	fmt.Fprintf(&b, "%s id=%s proxy=%s src=%s dst=%s tls=%t :method=%s :authority=%s :path=%s",
		kind, orDash(ev.Pod), proxy, orDash(ev.SourceAddr), orDash(ev.DestinationAddr), secured, ev.Method, ev.Authority, ev.Path)
	if ev.Status != 0 {
		fmt.Fprintf(&b, " :status=%d", ev.Status)
	}
	fmt.Fprintf(&b, " latency=%dµs", int64(ev.LatencyMs*1000+0.5))
	if ev.Error != "" {
		fmt.Fprintf(&b, " error=%s", ev.Error)
	}
	fmt.Fprintf(&b, " src_id=%s dst_id=%s", orDash(ev.SourceIdentity), orDash(ev.DestinationIdentity))
	return b.String()
}

// streamClient is statClient without an overall timeout: a tap streams for its duration,
// which the request's context bounds.
func streamClient(k *kubeOptions) (rest.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: k.context}
	config := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := config.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load the kubeconfig: %w", err)
	}
	namespace, _, err := config.Namespace()
	if err != nil || namespace == "" {
		namespace = "default"
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", err
	}
	return client.CoreV1().RESTClient(), namespace, nil
}
