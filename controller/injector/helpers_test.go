package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/inject"
)

const controlPlane = "lightmesh"

// installedConfigData is the lightmesh-config data `mesh install` renders with the test
// certificates.
func installedConfigData(t testing.TB) map[string]string {
	t.Helper()
	id, err := install.LoadIdentity("../../install/testdata/identity/ca.crt", "../../install/testdata/identity/issuer.crt", "../../install/testdata/identity/issuer.key", nil)
	if err != nil {
		t.Fatal(err)
	}
	objects, err := install.Render(install.DefaultValues(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		md, _ := o["metadata"].(map[string]any)
		if o["kind"] == "ConfigMap" && md["name"] == install.ConfigMapName {
			data := map[string]string{}
			for k, v := range o["data"].(map[string]any) {
				data[k] = v.(string)
			}
			return data
		}
	}
	t.Fatal("install rendered no lightmesh-config")
	return nil
}

func installedConfig(t testing.TB) inject.Config {
	t.Helper()
	cfg, err := ConfigFromData(installedConfigData(t))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fakeConfig is a ConfigSource answering cfg or err.
type fakeConfig struct {
	cfg inject.Config
	err error
}

func (f fakeConfig) InjectConfig(context.Context) (inject.Config, error) { return f.cfg, f.err }

// fakeNamespaces holds namespaces' annotations; a missing namespace is an error.
type fakeNamespaces map[string]map[string]string

func (f fakeNamespaces) NamespaceAnnotations(_ context.Context, name string) (map[string]string, error) {
	a, ok := f[name]
	if !ok {
		return nil, errors.New("namespaces " + name + " not found")
	}
	return a, nil
}

func newTestHandler(t testing.TB, cfg ConfigSource, namespaces fakeNamespaces) *Handler {
	t.Helper()
	h, err := New(Options{
		ControlPlaneNamespace: controlPlane,
		Config:                cfg,
		Namespaces:            namespaces,
		Logger:                discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// reviewBody is an AdmissionReview of the creation of podYAML in namespace ns.
func reviewBody(t testing.TB, ns, podYAML string) []byte {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(podYAML))
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("0b2c6a8e-uid"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// post sends body to h and returns the HTTP status and the body answered.
func post(h http.Handler, body []byte) (int, []byte) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body)))
	out, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, out
}

// respond posts a review and decodes the AdmissionReview answered.
func respond(t testing.TB, h http.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	code, out := post(h, body)
	if code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", code, out)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &review); err != nil {
		t.Fatalf("the answer is not an AdmissionReview: %v\n%s", err, out)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || review.Response == nil {
		t.Fatalf("the answer is not a v1 AdmissionReview with a response: %s", out)
	}
	if !review.Response.Allowed {
		t.Fatalf("the pod was not allowed: %s", out)
	}
	return review.Response
}

// applyPatch applies a response's JSONPatch to the object of a review body.
func applyPatch(t testing.TB, body []byte, resp *admissionv1.AdmissionResponse) map[string]any {
	t.Helper()
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		t.Fatal(err)
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("the patch does not decode: %v\n%s", err, resp.Patch)
	}
	patched, err := patch.Apply(review.Request.Object.Raw)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\n%s", err, resp.Patch)
	}
	var obj map[string]any
	if err := json.Unmarshal(patched, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}
