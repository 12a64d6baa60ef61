package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/install"
)

// Output formats of mesh stat.
const (
	statOutputTable = "table"
	statOutputWide  = "wide"
	statOutputJSON  = "json"
)

// statService is the stats service's Service name and port, reached through the API server.
const statService = "stats:8085"

// statOptions are the arguments and flags of `mesh stat`.
type statOptions struct {
	resource              string // canonical resource type
	name                  string // "" for every resource of the type
	namespace             string // -n; "" means the kubeconfig's namespace
	allNamespaces         bool
	window                time.Duration
	output                string
	controlPlaneNamespace string
	// from and to are TYPE[/NAME] filters; fromNamespace and toNamespace their namespaces
	// ("" means the resources' namespace).
	from, to, fromNamespace, toNamespace string
	// newClient returns a client of the core API group, whose service proxy reaches the
	// stats service, and the kubeconfig's namespace; tests give a fake API server.
	newClient func() (rest.Interface, string, error)
}

func newStatOptions() *statOptions {
	return &statOptions{
		window:                stats.DefaultWindow,
		output:                statOutputTable,
		controlPlaneNamespace: install.DefaultValues().Namespace,
	}
}

func newStatCmd(kube *kubeOptions) *cobra.Command {
	opts := newStatOptions()
	opts.newClient = func() (rest.Interface, string, error) { return statClient(kube) }
	return newStatCmdWith(opts)
}

// newStatCmdWith returns the stat command filling opts; tests give their own client.
func newStatCmdWith(opts *statOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stat TYPE [NAME]",
		Short: "Show traffic stats of meshed resources: success rate, requests per second, latency",
		Long: `Show the traffic that the proxies of each resource received over a window: how many of its
pods are meshed, the success rate, requests per second, latency percentiles and open TCP
connections, as the control plane's stats service measured them by scraping the proxies.

TYPE is deployment (deploy), statefulset (sts), daemonset (ds), job, pod (po) or namespace (ns).
The stats service is reached through the Kubernetes API server's service proxy, so you need
permission to get services/proxy in the control plane's namespace.

--from TYPE[/NAME] keeps only the requests that came from that resource's pods; --to
TYPE[/NAME] shows the resources' requests to that resource's pods instead of the ones they
received. Pods are told apart by their mesh identity (namespace and ServiceAccount), so
resources that share a ServiceAccount are not told apart; TCP figures are left out then.`,
		Example: `  # every deployment in namespace shop, over the last minute
  mesh stat deploy -n shop

  # one deployment over 5 minutes, with TCP byte rates
  mesh stat deploy web -n shop -t 5m -o wide

  # every namespace, as JSON
  mesh stat ns -o json

  # what deployment api answered deployment web, and what web got from api
  mesh stat deploy api -n shop --from deploy/web
  mesh stat deploy web -n shop --to deploy/api`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.setArgs(args); err != nil {
				return err
			}
			if err := opts.validate(); err != nil {
				return err
			}
			return runStat(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVarP(&opts.namespace, "namespace", "n", opts.namespace, "the namespace of the resources (default: the kubeconfig's namespace)")
	flags.BoolVarP(&opts.allNamespaces, "all-namespaces", "A", opts.allNamespaces, "show the resources of every namespace")
	flags.DurationVarP(&opts.window, "time-window", "t", opts.window, fmt.Sprintf("the window the stats cover, from %s to %s", stats.MinWindow, stats.MaxWindow))
	flags.StringVarP(&opts.output, "output", "o", opts.output, "output format: table, wide or json")
	flags.StringVar(&opts.controlPlaneNamespace, "control-plane-namespace", opts.controlPlaneNamespace, "the namespace lightmesh is installed in")
	flags.StringVar(&opts.from, "from", "", "only the requests from the pods of this resource (TYPE or TYPE/NAME)")
	flags.StringVar(&opts.fromNamespace, "from-namespace", "", "the namespace of --from (default: --namespace)")
	flags.StringVar(&opts.to, "to", "", "the requests to the pods of this resource (TYPE or TYPE/NAME) instead of the ones received")
	flags.StringVar(&opts.toNamespace, "to-namespace", "", "the namespace of --to (default: --namespace)")
	return cmd
}

func (o *statOptions) setArgs(args []string) error {
	resource, ok := stats.Resources[strings.ToLower(args[0])]
	if !ok {
		return fmt.Errorf("unknown resource type %q: use deployment, statefulset, daemonset, job, pod or namespace", args[0])
	}
	o.resource = resource
	if len(args) == 2 {
		o.name = args[1]
	}
	return nil
}

func (o *statOptions) validate() error {
	if !slices.Contains([]string{statOutputTable, statOutputWide, statOutputJSON}, o.output) {
		return fmt.Errorf("--output %q: use table, wide or json", o.output)
	}
	if o.window < stats.MinWindow || o.window > stats.MaxWindow {
		return fmt.Errorf("--time-window %s: give a duration from %s to %s", o.window, stats.MinWindow, stats.MaxWindow)
	}
	if o.allNamespaces && o.namespace != "" {
		return errors.New("--namespace and --all-namespaces exclude each other: give one of them")
	}
	if errs := validation.IsDNS1123Label(o.controlPlaneNamespace); len(errs) > 0 {
		return fmt.Errorf("--control-plane-namespace %q: %s", o.controlPlaneNamespace, strings.Join(errs, "; "))
	}
	if o.from != "" && o.to != "" {
		return errors.New("--from and --to exclude each other: give one of them")
	}
	for flag, spec := range map[string]string{"--from": o.from, "--to": o.to} {
		if spec == "" {
			continue
		}
		kind, _, _ := strings.Cut(spec, "/")
		if r, ok := stats.Resources[strings.ToLower(kind)]; !ok || r == stats.ResourceNamespace {
			return fmt.Errorf("%s %q: write TYPE or TYPE/NAME, such as deploy/web (TYPE: deployment, statefulset, daemonset, job, pod)", flag, spec)
		}
	}
	return nil
}

// runStat asks the stats service and writes its rows to out; errOut says when there are none.
func runStat(ctx context.Context, _ io.Reader, out, errOut io.Writer, opts *statOptions) error {
	client, kubeNamespace, err := opts.newClient()
	if err != nil {
		return err
	}
	namespace := opts.namespace
	if namespace == "" && !opts.allNamespaces {
		namespace = kubeNamespace
	}
	if opts.resource == stats.ResourceNamespace {
		namespace = "" // the rows are namespaces; NAME picks one
	}
	params := url.Values{"resource": {opts.resource}, "window": {opts.window.String()}}
	if namespace != "" {
		params.Set("namespace", namespace)
	}
	if opts.name != "" {
		params.Set("name", opts.name)
	}
	for param, value := range map[string]string{"from": opts.from, "from_namespace": opts.fromNamespace, "to": opts.to, "to_namespace": opts.toNamespace} {
		if value != "" {
			params.Set(param, strings.ToLower(value))
		}
	}
	var resp stats.Response
	if err := queryStats(ctx, client, opts.controlPlaneNamespace, stats.APIPath, params, "stats", &resp); err != nil {
		return err
	}
	if opts.output == statOutputJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	if len(resp.Rows) == 0 {
		_, err := fmt.Fprintln(errOut, "No resources found.")
		return err
	}
	return writeStatTable(out, resp.Rows, namespace == "" && opts.resource != stats.ResourceNamespace, opts.output == statOutputWide)
}

// queryStats asks the stats service in cpNamespace (through the API server's service proxy)
// for path with params and decodes its JSON answer (what names it in errors) into v.
func queryStats(ctx context.Context, client rest.Interface, cpNamespace, path string, params url.Values, what string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	req := client.Get().AbsPath("/api/v1/namespaces", cpNamespace, "services", statService, "proxy", path)
	for k, values := range params {
		req = req.Param(k, values[0])
	}
	body, err := req.DoRaw(ctx)
	if err != nil {
		return statError(cpNamespace, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the stats service answered something other than %s (%w): is %s/%s lightmesh's stats service?", what, err, cpNamespace, statService)
	}
	return nil
}

// statError explains a failed request to the stats service.
func statError(cpNamespace string, err error, body []byte) error {
	var apiErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		return fmt.Errorf("the stats service refused the query: %s", apiErr.Error)
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("no stats service in namespace %s (%w): install lightmesh there, or give --control-plane-namespace", cpNamespace, err)
	case apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err):
		return fmt.Errorf("the stats service in namespace %s does not answer (%w): run mesh check", cpNamespace, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you may not reach the stats service (%w): ask for get on services/proxy in namespace %s", err, cpNamespace)
	}
	return fmt.Errorf("query the stats service in namespace %s: %w", cpNamespace, err)
}

// writeStatTable writes rows as Linkerd's stat table does, with a NAMESPACE column when the
// rows span namespaces and the TCP byte rates when wide.
func writeStatTable(out io.Writer, rows []stats.Row, withNamespace, wide bool) error {
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	header := []string{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "READ_BYTES/SEC", "WRITE_BYTES/SEC")
	}
	_, _ = fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := []string{
			r.Name, fmt.Sprintf("%d/%d", r.MeshedPods, r.TotalPods),
			format(r.SuccessRate, func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }),
			format(r.RequestsPerSecond, func(v float64) string { return fmt.Sprintf("%.1frps", v) }),
			format(r.LatencyP50Ms, ms), format(r.LatencyP95Ms, ms), format(r.LatencyP99Ms, ms),
			format(r.TCPConnections, func(v float64) string { return fmt.Sprintf("%.0f", v) }),
		}
		if withNamespace {
			cells = append([]string{r.Namespace}, cells...)
		}
		if wide {
			bps := func(v float64) string { return fmt.Sprintf("%.1fB/s", v) }
			cells = append(cells, format(r.ReadBytesPerSecond, bps), format(r.WriteBytesPerSecond, bps))
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func ms(v float64) string { return fmt.Sprintf("%.0fms", math.Round(v)) }

// format renders a measurement, or "-" when there is none.
func format(v *float64, f func(float64) string) string {
	if v == nil {
		return "-"
	}
	return f(*v)
}

// statClient makes a core API client from the global kubeconfig flags, and returns the
// kubeconfig's namespace ("default" when it names none).
func statClient(k *kubeOptions) (rest.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: k.context}
	config := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := config.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load the kubeconfig: %w", err)
	}
	cfg.Timeout = kubeTimeout
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
