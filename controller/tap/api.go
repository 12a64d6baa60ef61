// Package tap is the controller's tap API (GET internal/tap.APIPath on the stats service):
// it finds the running meshed pods of a resource, opens the tap of each pod's proxy
// (pod IP, port 4190) over mutual TLS with the controller's own mesh identity, checks that
// each proxy is the pod's identity, and merges their streams into one newline-delimited JSON
// response, one internal/tap.Event per line with its Pod and Namespace filled. A proxy that
// cannot be tapped is reported as an internal/tap.StreamError line; the stream ends after
// max events, at its duration, when every proxy's stream ended, or when the client goes.
//
// The CLI and the dashboard reach it through the Kubernetes API server's service proxy, as
// they reach the stat API, so RBAC (get services/proxy in the control plane's namespace)
// decides who may tap.
package tap

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/tap"
)

// Defaults of Options.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxPods        = 100
	// listTimeout bounds the pod list of one tap.
	listTimeout = 10 * time.Second
	// writeGrace is how long past its duration a tap's response may take to write.
	writeGrace = 15 * time.Second
)

// Query parameters of the API besides internal/tap's.
const (
	ParamNamespace = "namespace"
	// ParamResource is TYPE/NAME (deployment/web) or TYPE with ParamName.
	ParamResource = "resource"
	ParamName     = "name"
)

// PodLister returns the pods of a namespace.
type PodLister func(ctx context.Context, namespace string) ([]*corev1.Pod, error)

// KubePods lists pods with the Kubernetes API.
func KubePods(client kubernetes.Interface) PodLister {
	return func(ctx context.Context, namespace string) ([]*corev1.Pod, error) {
		ctx, cancel := context.WithTimeout(ctx, listTimeout)
		defer cancel()
		list, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		pods := make([]*corev1.Pod, len(list.Items))
		for i := range list.Items {
			pods[i] = &list.Items[i]
		}
		return pods, nil
	}
}

// Options configure an API.
type Options struct {
	// Pods lists a namespace's pods. Required.
	Pods PodLister
	// Certificate returns the controller's client certificate and the mesh's trust anchors
	// (SelfIssued.Certificate). Required.
	Certificate func() (*tls.Certificate, []*x509.Certificate, error)
	// TrustDomain of the proxies' identities; identity.DefaultTrustDomain when empty.
	TrustDomain string
	// Port of the proxies' tap listener; tap.ProxyPort when zero.
	Port int
	// Dial opens connections to proxies (tests map pod IPs); a net.Dialer when nil.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds connecting to a proxy, TLS included (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// MaxPods is how many pods one tap opens at most (DefaultMaxPods).
	MaxPods int
	// Clock tells the time when verifying proxies; nil means the system clock.
	Clock identity.Clock
	// Logger; slog.Default() when nil.
	Logger *slog.Logger
}

// API serves the tap API.
type API struct{ opts Options }

// New checks opts.
func New(opts Options) (*API, error) {
	if opts.Pods == nil || opts.Certificate == nil {
		return nil, errors.New("tap: a pod lister and the controller's certificate are required")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = identity.DefaultTrustDomain
	}
	if opts.Port == 0 {
		opts.Port = tap.ProxyPort
	}
	if opts.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		opts.Dial = d.DialContext
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxPods == 0 {
		opts.MaxPods = DefaultMaxPods
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &API{opts: opts}, nil
}

// Target is what a tap request names: the pods of Resource (a stats.Resource* type) Name
// in Namespace (every resource of the type when Name is empty).
type Target struct {
	Namespace, Resource, Name string
}

// ParseTarget reads namespace and resource (TYPE/NAME, or TYPE with name).
func ParseTarget(v url.Values) (Target, error) {
	t := Target{Namespace: v.Get(ParamNamespace), Name: v.Get(ParamName)}
	if t.Namespace == "" {
		return t, errors.New("namespace is required: give namespace=NS")
	}
	kind, name, hasName := strings.Cut(v.Get(ParamResource), "/")
	resource, ok := stats.Resources[strings.ToLower(kind)]
	if !ok {
		return t, fmt.Errorf("resource %q: give TYPE/NAME, TYPE one of deployment, statefulset, daemonset, job, pod or namespace", v.Get(ParamResource))
	}
	t.Resource = resource
	if hasName {
		t.Name = name
	}
	return t, nil
}

// owns reports whether pod belongs to the target.
func (t Target) owns(pod *corev1.Pod) bool {
	if t.Resource == stats.ResourceNamespace {
		return true
	}
	if t.Resource == stats.ResourcePod {
		return t.Name == "" || pod.Name == t.Name
	}
	for _, ref := range pod.OwnerReferences {
		name := ""
		switch {
		case t.Resource == stats.ResourceDeployment && ref.Kind == "ReplicaSet":
			hash := pod.Labels["pod-template-hash"]
			if n, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && hash != "" {
				name = n
			}
		case t.Resource == stats.ResourceStatefulSet && ref.Kind == "StatefulSet",
			t.Resource == stats.ResourceDaemonSet && ref.Kind == "DaemonSet",
			t.Resource == stats.ResourceJob && ref.Kind == "Job":
			name = ref.Name
		}
		if name != "" && (t.Name == "" || name == t.Name) {
			return true
		}
	}
	return false
}

func (t Target) String() string {
	if t.Name == "" {
		return t.Resource + " in namespace " + t.Namespace
	}
	return t.Resource + "/" + t.Name + " in namespace " + t.Namespace
}

// pods returns the running meshed pods of t that have an IP.
func (a *API) pods(ctx context.Context, t Target) ([]*corev1.Pod, error) {
	all, err := a.opts.Pods(ctx, t.Namespace)
	if err != nil {
		return nil, fmt.Errorf("list the pods of namespace %s: %w", t.Namespace, err)
	}
	var pods []*corev1.Pod
	for _, pod := range all {
		if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" && pod.DeletionTimestamp == nil && stats.Meshed(pod) && t.owns(pod) {
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// ServeHTTP serves GET APIPath.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, errors.New("use GET"))
		return
	}
	target, err := ParseTarget(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q, err := tap.ParseQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	pods, err := a.pods(r.Context(), target)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if len(pods) == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("no running meshed pod of %s: check the name, and that its pods are injected (mesh stat shows MESHED)", target))
		return
	}
	cert, anchors, err := a.opts.Certificate()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("the controller has no mesh identity to tap with: %w", err))
		return
	}
	verifier, err := identity.NewVerifier(anchors, a.opts.TrustDomain, a.opts.Clock)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	a.stream(w, r, q, pods, cert, verifier)
}

// line is one line of the merged stream.
type line struct {
	event *tap.Event
	err   *tap.StreamError
}

// stream merges the taps of pods into w.
func (a *API) stream(w http.ResponseWriter, r *http.Request, q tap.Query, pods []*corev1.Pod, cert *tls.Certificate, verifier *identity.Verifier) {
	ctx, cancel := context.WithTimeout(r.Context(), q.Duration)
	defer cancel()
	rc := http.NewResponseController(w)
	// The stats server's write timeout is shorter than a tap: this response may take as long
	// as the tap lasts.
	_ = rc.SetWriteDeadline(time.Now().Add(q.Duration + writeGrace))
	w.Header().Set("Content-Type", tap.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()

	lines := make(chan line, 64)
	var wg sync.WaitGroup
	skipped := 0
	if len(pods) > a.opts.MaxPods {
		skipped = len(pods) - a.opts.MaxPods
		pods = pods[:a.opts.MaxPods]
	}
	for _, pod := range pods {
		wg.Go(func() { a.tapPod(ctx, pod, q, cert, verifier, lines) })
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	defer func() { cancel(); <-allDone }()

	enc := json.NewEncoder(w)
	write := func(v any) bool { return enc.Encode(v) == nil && rc.Flush() == nil }
	if skipped > 0 && !write(tap.StreamError{StreamError: fmt.Sprintf("%d pods not tapped: one tap opens at most %d; name one resource or pod", skipped, a.opts.MaxPods)}) {
		return
	}
	for sent := 0; sent < q.Max; {
		select {
		case l := <-lines:
			if l.event != nil {
				if !write(l.event) {
					return
				}
				sent++
			} else if !write(l.err) {
				return
			}
		case <-allDone:
			// Drain what the pods sent before they ended.
			for {
				select {
				case l := <-lines:
					if l.event != nil && sent >= q.Max {
						return
					}
					if l.event != nil {
						sent++
						if !write(l.event) {
							return
						}
					} else if !write(l.err) {
						return
					}
				default:
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// tapPod streams one pod's tap into lines until it ends or ctx does.
func (a *API) tapPod(ctx context.Context, pod *corev1.Pod, q tap.Query, cert *tls.Certificate, verifier *identity.Verifier, lines chan<- line) {
	send := func(l line) {
		select {
		case lines <- l:
		case <-ctx.Done():
		}
	}
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		a.opts.Logger.Info("tap of a pod failed", "pod", pod.Namespace+"/"+pod.Name, "err", msg)
		send(line{err: &tap.StreamError{StreamError: msg, Pod: pod.Name}})
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	want, err := identity.NewSpiffeID(a.opts.TrustDomain, pod.Namespace, sa)
	if err != nil {
		fail("pod %s: %v", pod.Name, err)
		return
	}
	tlsConfig := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"http/1.1"},
		// The standard verification knows nothing of SPIFFE IDs: the verifier does it all.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			got, err := verifier.VerifyRaw(raw, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return identity.MatchIdentity(got, want)
		},
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, a.opts.ConnectTimeout)
			defer cancel()
			return a.opts.Dial(ctx, network, addr)
		},
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   a.opts.ConnectTimeout,
		ResponseHeaderTimeout: a.opts.ConnectTimeout,
		DisableKeepAlives:     true,
		DisableCompression:    true,
	}
	defer transport.CloseIdleConnections()
	addr := net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(a.opts.Port))
	u := url.URL{Scheme: "https", Host: addr, Path: tap.ProxyPath, RawQuery: q.Values().Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fail("pod %s: %v", pod.Name, err)
		return
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		if ctx.Err() == nil {
			fail("pod %s: cannot tap its proxy at %s: %v; is the proxy running this version, and port %d not intercepted?", pod.Name, addr, err, a.opts.Port)
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		fail("pod %s: its proxy refused the tap: %s: %s", pod.Name, resp.Status, strings.TrimSpace(string(body)))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	for sc.Scan() {
		var probe struct {
			StreamError *string `json:"streamError"`
		}
		raw := sc.Bytes()
		if err := json.Unmarshal(raw, &probe); err != nil {
			fail("pod %s: its proxy sent a line that is not JSON: %v", pod.Name, err)
			return
		}
		if probe.StreamError != nil {
			send(line{err: &tap.StreamError{StreamError: *probe.StreamError, Pod: pod.Name}})
			continue
		}
		var ev tap.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			fail("pod %s: its proxy sent a line that is not an event: %v", pod.Name, err)
			return
		}
		ev.Pod, ev.Namespace = pod.Name, pod.Namespace
		send(line{event: &ev})
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		fail("pod %s: the tap stream broke: %v", pod.Name, err)
	}
}
