package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lightmesh/lightmesh/internal/inject"
)

// MaxBodyBytes is the largest AdmissionReview read; a bigger body is answered with 400.
const MaxBodyBytes = 1 << 20

// InjectedByPrefix starts the lightmesh.io/injected-by annotation of the pods the webhook
// injects ("mesh-webhook 0.1.0").
const InjectedByPrefix = "mesh-webhook "

// ConfigSource gives the installation's injection configuration (with its trust anchors).
type ConfigSource interface {
	InjectConfig(ctx context.Context) (inject.Config, error)
}

// NamespaceSource gives the annotations of a namespace.
type NamespaceSource interface {
	NamespaceAnnotations(ctx context.Context, name string) (map[string]string, error)
}

// Options are the choices of New.
type Options struct {
	// ControlPlaneNamespace is never injected, nor is kube-system.
	ControlPlaneNamespace string
	Config                ConfigSource
	Namespaces            NamespaceSource
	// Logger defaults to slog.Default(); Registerer, when set, gets the webhook's metrics.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Handler answers AdmissionReviews of Pods on any path (the install routes /inject to it).
type Handler struct {
	opts    Options
	log     *slog.Logger
	reviews *prometheus.CounterVec
}

// Results counted by injector_admission_reviews_total.
const (
	resultInjected  = "injected"
	resultSkipped   = "skipped"
	resultWarned    = "warned"
	resultMalformed = "malformed"
)

// New returns the webhook's handler.
func New(opts Options) (*Handler, error) {
	if opts.ControlPlaneNamespace == "" || opts.Config == nil || opts.Namespaces == nil {
		return nil, errors.New("injector: give the control-plane namespace, a configuration source and a namespace source")
	}
	h := &Handler{opts: opts, log: opts.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.reviews = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "injector_admission_reviews_total",
		Help: "AdmissionReviews answered, by result: injected, skipped (allowed unchanged), warned (allowed unchanged with a warning), malformed (HTTP 400).",
	}, []string{"result"})
	for _, r := range []string{resultInjected, resultSkipped, resultWarned, resultMalformed} {
		h.reviews.WithLabelValues(r)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(h.reviews); err != nil {
			return nil, fmt.Errorf("injector metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP reads an admission.k8s.io/v1 AdmissionReview and answers one.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an admission.k8s.io/v1 AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		h.malformed(w, fmt.Sprintf("read the request body: %v", err))
		return
	}
	if len(body) > MaxBodyBytes {
		h.malformed(w, fmt.Sprintf("the body is over %d bytes; an AdmissionReview of a pod is far smaller", MaxBodyBytes))
		return
	}
	req, err := decodeReview(body)
	if err != nil {
		h.malformed(w, err.Error())
		return
	}
	resp := h.Review(r.Context(), req)
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		http.Error(w, "encode the AdmissionReview response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func (h *Handler) malformed(w http.ResponseWriter, why string) {
	h.reviews.WithLabelValues(resultMalformed).Inc()
	h.log.Warn("malformed admission review", "reason", why)
	http.Error(w, "not an admission.k8s.io/v1 AdmissionReview with a request: "+why, http.StatusBadRequest)
}

// decodeReview parses an AdmissionReview and checks it is a v1 review with a request.
func decodeReview(body []byte) (*admissionv1.AdmissionRequest, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("bad JSON: %w", err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("apiVersion %q, kind %q; want admission.k8s.io/v1 AdmissionReview (admissionReviewVersions: [v1])", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("the request has no uid")
	}
	return review.Request, nil
}

// Review decides on one admission request: always allowed, with a JSONPatch adding the
// proxy when the pod is to be injected, or a warning when it should have been but cannot.
func (h *Handler) Review(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	log := h.log.With("namespace", req.Namespace, "name", req.Name, "uid", string(req.UID))
	patch, warning, err := h.decide(ctx, req)
	switch {
	case err != nil:
		h.reviews.WithLabelValues(resultWarned).Inc()
		log.Warn("admitted without a proxy", "reason", err.Error())
		resp.Warnings = []string{"lightmesh: the pod was not injected: " + err.Error()}
	case warning != "":
		h.reviews.WithLabelValues(resultWarned).Inc()
		log.Warn("admitted without a proxy", "reason", warning)
		resp.Warnings = []string{"lightmesh: the pod was not injected: " + warning}
	case patch == nil:
		h.reviews.WithLabelValues(resultSkipped).Inc()
		log.Debug("admitted unchanged")
	default:
		h.reviews.WithLabelValues(resultInjected).Inc()
		log.Info("injected the proxy")
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp
}

// decide returns the patch to apply (nil: none), or why a pod meant to be injected is not
// (a warning, or an error reading it).
func (h *Handler) decide(ctx context.Context, req *admissionv1.AdmissionRequest) ([]byte, string, error) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
		return nil, "", nil // not ours: the webhook configuration sends only pod creations
	}
	ns := req.Namespace
	if ns == metav1.NamespaceSystem || ns == h.opts.ControlPlaneNamespace {
		return nil, "", nil
	}
	if len(req.Object.Raw) == 0 {
		return nil, "", errors.New("the review carries no pod object")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, "", fmt.Errorf("the pod does not decode: %w", err)
	}
	if alreadyInjected(&pod) {
		return nil, "", nil
	}
	switch mode := pod.Annotations[inject.AnnotationInject]; mode {
	case inject.InjectDisabled:
		return nil, "", nil
	case inject.InjectEnabled, inject.InjectIngress:
	case "":
		annotations, err := h.opts.Namespaces.NamespaceAnnotations(ctx, ns)
		if err != nil {
			return nil, "", fmt.Errorf("read namespace %s: %w", ns, err)
		}
		if annotations[inject.AnnotationInject] != inject.InjectEnabled {
			return nil, "", nil
		}
	default:
		return nil, fmt.Sprintf("annotation %s: %q is not enabled, disabled or ingress", inject.AnnotationInject, mode), nil
	}

	cfg, err := h.opts.Config.InjectConfig(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("no injection configuration: %w", err)
	}
	cfg.InjectedBy = InjectedByPrefix + cfg.Version
	before, err := decodeObject(req.Object.Raw)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeObject(req.Object.Raw)
	if err != nil {
		return nil, "", err
	}
	// The API server may leave them out of the embedded object; injection needs them.
	for _, obj := range []map[string]any{before, after} {
		obj["apiVersion"], obj["kind"] = "v1", "Pod"
	}
	action, reason, changed, err := inject.InjectObject(after, inject.Options{Mode: inject.ModeInject, Config: cfg})
	if err != nil {
		return nil, trimPrefix(err.Error()), nil
	}
	if action != inject.Injected || !changed {
		return nil, reason, nil
	}
	patch, err := jsonPatch(before, after)
	if err != nil {
		return nil, "", err
	}
	return patch, "", nil
}

// trimPrefix drops the " document 0 (pod/x, line 0): " place InjectObject's errors start
// with, meaningless for an admitted pod.
func trimPrefix(msg string) string {
	if _, rest, ok := strings.Cut(msg, "): "); ok && strings.Contains(msg, " document 0 (") {
		return rest
	}
	return msg
}

func alreadyInjected(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[inject.AnnotationProxyVersion]; ok {
		return true
	}
	named := func(c corev1.Container) bool { return c.Name == inject.ProxyContainerName }
	return slices.ContainsFunc(pod.Spec.InitContainers, named) || slices.ContainsFunc(pod.Spec.Containers, named)
}

// decodeObject decodes a JSON object in the generic form internal/inject works on.
func decodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("the pod is not a JSON object: %w", err)
	}
	if obj == nil {
		return nil, errors.New("the pod is null, not a JSON object")
	}
	return obj, nil
}
