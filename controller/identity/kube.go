package identity

import (
	"context"
	"fmt"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

// EventComponent is the source component of the Events the service records.
const EventComponent = "lightmesh-identity"

// KubeTokenReviewer checks tokens with the Kubernetes TokenReview API (the controller's
// ServiceAccount needs `create` on tokenreviews.authentication.k8s.io).
type KubeTokenReviewer struct {
	Client kubernetes.Interface
}

// Review creates a TokenReview of token for audience.
func (r KubeTokenReviewer) Review(ctx context.Context, token, audience string) (TokenReview, error) {
	review, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return TokenReview{}, fmt.Errorf("create TokenReview: %w", err)
	}
	return TokenReview{
		Authenticated: review.Status.Authenticated,
		Username:      review.Status.User.Username,
		Audiences:     review.Status.Audiences,
		Error:         review.Status.Error,
	}, nil
}

// KubeEventRecorder records Events on the controller's own Pod, named by the downward API
// (POD_NAME, POD_NAMESPACE, and POD_UID when given; without it the Pod's UID is read once, so
// that `kubectl describe pod` lists the events). The controller's ServiceAccount needs `create`
// on events (and `get` on its pod without POD_UID).
type KubeEventRecorder struct {
	Client    kubernetes.Interface
	Namespace string
	Pod       string
	UID       string
	Clock     meshid.Clock

	uidOnce sync.Once
}

// Event creates a core/v1 Event of eventType ("Normal" or "Warning") on the Pod.
func (r *KubeEventRecorder) Event(ctx context.Context, eventType, reason, message string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.uidOnce.Do(func() {
		if r.UID != "" {
			return
		}
		if pod, err := r.Client.CoreV1().Pods(r.Namespace).Get(ctx, r.Pod, metav1.GetOptions{}); err == nil {
			r.UID = string(pod.UID)
		}
	})
	clock := r.Clock
	if clock == nil {
		clock = meshid.SystemClock{}
	}
	now := clock.Now()
	if len(message) > 1024 {
		message = message[:1021] + "..."
	}
	event := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", r.Pod, now.UnixNano()),
			Namespace: r.Namespace,
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1",
			Kind:       "Pod",
			Namespace:  r.Namespace,
			Name:       r.Pod,
			UID:        types.UID(r.UID),
		},
		Reason:              reason,
		Message:             message,
		Type:                eventType,
		Source:              corev1.EventSource{Component: EventComponent},
		FirstTimestamp:      metav1.NewTime(now),
		LastTimestamp:       metav1.NewTime(now),
		Count:               1,
		ReportingController: "lightmesh.io/identity",
		ReportingInstance:   r.Pod,
	}
	if _, err := r.Client.CoreV1().Events(r.Namespace).Create(ctx, event, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create event %s on pod %s/%s: %w", reason, r.Namespace, r.Pod, err)
	}
	return nil
}
