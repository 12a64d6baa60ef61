package injector

import (
	"encoding/json"
	"net/http"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/lightmesh/lightmesh/internal/inject"
)

// FuzzInjectReview posts arbitrary bodies to the webhook: it must never panic, must answer
// 400 or a v1 AdmissionReview that allows the pod with the request's uid, and any patch it
// answers must apply to the pod it came with.
//
//	go test ./controller/injector -run '^$' -fuzz FuzzInjectReview -fuzztime 20s
func FuzzInjectReview(f *testing.F) {
	f.Add(reviewBody(f, "app", plainPod))
	f.Add(reviewBody(f, "plain", withAnnotations(`lightmesh.io/inject: ingress, config.lightmesh.io/opaque-ports: "1-9"`)))
	f.Add(reviewBody(f, "app", plainPod+"  hostNetwork: true\n"))
	f.Add(reviewBody(f, "app", withAnnotations(`lightmesh.io/inject: disabled`)))
	f.Add(reviewBody(f, "kube-system", plainPod))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"app","object":{"spec":7}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"app","object":null}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	cfg := installedConfig(f)
	h := newTestHandler(f, fakeConfig{cfg: cfg}, fakeNamespaces{
		"app":   {inject.AnnotationInject: inject.InjectEnabled},
		"plain": nil,
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		code, out := post(h, body)
		if code == http.StatusBadRequest {
			return
		}
		if code != http.StatusOK {
			t.Fatalf("HTTP %d: %s", code, out)
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &review); err != nil || review.Response == nil {
			t.Fatalf("the answer is not an AdmissionReview with a response (%v): %s", err, out)
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			t.Fatalf("a body that does not decode to a review with a request was answered 200: %s", body)
		}
		if !review.Response.Allowed || review.Response.UID != in.Request.UID {
			t.Fatalf("response %+v for uid %q", review.Response, in.Request.UID)
		}
		if len(review.Response.Patch) == 0 {
			return
		}
		patch, err := jsonpatch.DecodePatch(review.Response.Patch)
		if err != nil {
			t.Fatalf("the patch does not decode: %v", err)
		}
		patched, err := patch.Apply(in.Request.Object.Raw)
		if err != nil {
			t.Fatalf("the patch does not apply: %v\npatch %s\nobject %s", err, review.Response.Patch, in.Request.Object.Raw)
		}
		if !json.Valid(patched) {
			t.Fatalf("the patched pod is not JSON: %s", patched)
		}
	})
}
