package identity

import (
	"context"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

func TestKubeTokenReviewer(t *testing.T) {
	client := fake.NewClientset()
	var asked *authnv1.TokenReview
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		asked = action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		answer := asked.DeepCopy()
		answer.Status = authnv1.TokenReviewStatus{
			Authenticated: true,
			User:          authnv1.UserInfo{Username: "system:serviceaccount:ns1:a"},
			Audiences:     []string{"identity.lightmesh.io"},
		}
		return true, answer, nil
	})
	review, err := KubeTokenReviewer{Client: client}.Review(context.Background(), "tok", "identity.lightmesh.io")
	if err != nil {
		t.Fatal(err)
	}
	if asked.Spec.Token != "tok" || len(asked.Spec.Audiences) != 1 || asked.Spec.Audiences[0] != "identity.lightmesh.io" {
		t.Errorf("TokenReview spec %+v, want the token and the one audience", asked.Spec)
	}
	if !review.Authenticated || review.Username != "system:serviceaccount:ns1:a" || len(review.Audiences) != 1 {
		t.Errorf("review %+v does not carry the API server's answer", review)
	}
}

func TestKubeEventRecorder(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ctl-0", Namespace: "lightmesh", UID: "uid-1"}}
	client := fake.NewClientset(pod)
	clock := meshid.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	rec := &KubeEventRecorder{Client: client, Namespace: "lightmesh", Pod: "ctl-0", Clock: clock}
	if err := rec.Event(context.Background(), "Warning", EventIssuerRejected, "kept the issuer"); err != nil {
		t.Fatal(err)
	}
	events, err := client.CoreV1().Events("lightmesh").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) != 1 {
		t.Fatalf("%d events, want 1", len(events.Items))
	}
	e := events.Items[0]
	if e.InvolvedObject.Kind != "Pod" || e.InvolvedObject.Name != "ctl-0" || e.InvolvedObject.UID != "uid-1" ||
		e.Type != "Warning" || e.Reason != EventIssuerRejected || e.Message != "kept the issuer" || e.Source.Component != EventComponent {
		t.Errorf("event %+v does not describe the rejection on the controller's pod", e)
	}
}
