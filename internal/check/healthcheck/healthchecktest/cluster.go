// Package healthchecktest builds fake clusters for tests of `mesh check`: a client-go fake
// clientset holding what `mesh install` renders, in the state a healthy cluster reports
// (the controller available and ready, the nodes heartbeating, the user allowed everything),
// which tests then break one piece at a time.
package healthchecktest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiversion "k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/inject"
	"github.com/lightmesh/lightmesh/internal/version"
)

// Now is the fixed time of the fake clusters.
var Now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Options shape a fake cluster.
type Options struct {
	// Namespace is the control plane's namespace ("lightmesh" when empty).
	Namespace string
	// Installed renders the control plane into the cluster.
	Installed bool
	// AnchorLifetime and IssuerLifetime default to the identity package's defaults.
	AnchorLifetime, IssuerLifetime time.Duration
	// AppNamespace, when set, gets one meshed pod, "web", ready and of the CLI's version.
	AppNamespace string
	// ServerVersion is the API server's version ("v1.37.2" when empty).
	ServerVersion string
}

// Cluster returns a fake clientset for opts, at Now.
func Cluster(t testing.TB, opts Options) *fake.Clientset {
	t.Helper()
	if opts.Namespace == "" {
		opts.Namespace = install.DefaultValues().Namespace
	}
	if opts.ServerVersion == "" {
		opts.ServerVersion = "v1.37.2"
	}
	clock := identity.NewFakeClock(Now)
	objects := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "node1"},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.NewTime(Now.Add(-4 * time.Minute)),
			}}},
		},
		&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "node1", Namespace: corev1.NamespaceNodeLease},
			Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: Now.Add(-5 * time.Second)}},
		},
	}
	var issuer *identity.Issuer
	if opts.Installed {
		var cp []runtime.Object
		cp, issuer = controlPlane(t, opts, clock)
		objects = append(objects, cp...)
	}
	if opts.AppNamespace != "" {
		objects = append(objects,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.AppNamespace}},
			MeshedPod(opts.AppNamespace, "web", version.Version, true))
	}
	client := fake.NewClientset(objects...)
	client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &apiversion.Info{GitVersion: opts.ServerVersion}
	Allow(client, nil)
	// The proxies answer their certificate, issued by the installation's issuer; without
	// an installation there is none to answer.
	ServeCertificates(client, func(ns, pod string) ([]byte, error) {
		if issuer == nil {
			return nil, apierrors.NewNotFound(corev1.Resource("pods/proxy"), pod)
		}
		return LeafPEM(t, issuer, ns, clock), nil
	})
	return client
}

// ServeCertificates answers the proxies' certificate endpoint (pods/proxy GETs) with
// answer(namespace, pod).
func ServeCertificates(client *fake.Clientset, answer func(namespace, pod string) ([]byte, error)) {
	client.PrependProxyReactor("pods", func(action k8stesting.Action) (bool, rest.ResponseWrapper, error) {
		get := action.(k8stesting.ProxyGetAction)
		data, err := answer(get.GetNamespace(), get.GetName())
		return true, rawResponse{data: data, err: err}, nil
	})
}

type rawResponse struct {
	data []byte
	err  error
}

func (r rawResponse) DoRaw(context.Context) ([]byte, error) { return r.data, r.err }
func (r rawResponse) Stream(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(r.data)), r.err
}

// LeafPEM is a workload certificate of namespace's default ServiceAccount from issuer, then
// the issuer: what a proxy serves.
func LeafPEM(t testing.TB, issuer *identity.Issuer, namespace string, clock identity.Clock) []byte {
	t.Helper()
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.NewSpiffeID(identity.DefaultTrustDomain, namespace, "default")
	if err != nil {
		t.Fatal(err)
	}
	der, err := identity.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := issuer.Sign(csr, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return append(identity.EncodeCertificatesPEM(leaf), issuer.CertificatePEM()...)
}

// NewIssuer is a trust anchor and issuer of their own, valid at Now.
func NewIssuer(t testing.TB) *identity.Issuer {
	t.Helper()
	clock := identity.NewFakeClock(Now)
	anchor, err := identity.GenerateTrustAnchor(identity.CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := identity.GenerateIssuer(anchor, identity.CAOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return issuer
}

// Allow answers SelfSubjectAccessReviews: allowed unless the resource is in denied.
func Allow(client *fake.Clientset, denied []string) {
	client.PrependReactor("create", "selfsubjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		review.Status.Allowed = true
		for _, d := range denied {
			if review.Spec.ResourceAttributes != nil && review.Spec.ResourceAttributes.Resource == d {
				review.Status.Allowed = false
				review.Status.Reason = "RBAC: access denied"
			}
		}
		return true, review, nil
	})
}

// controlPlane is what mesh install renders, with the controller available and one ready
// controller pod.
func controlPlane(t testing.TB, opts Options, clock identity.Clock) ([]runtime.Object, *identity.Issuer) {
	t.Helper()
	anchor, err := identity.GenerateTrustAnchor(identity.CAOptions{Lifetime: opts.AnchorLifetime, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := identity.GenerateIssuer(anchor, identity.CAOptions{Lifetime: opts.IssuerLifetime, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	values := install.DefaultValues()
	values.Namespace = opts.Namespace
	rendered, err := install.Render(values, install.Identity{
		TrustAnchorsPEM:      anchor.CertificatePEM(),
		IssuerCertificatePEM: issuer.CertificatePEM(),
		IssuerKeyPEM:         keyPEM,
	})
	if err != nil {
		t.Fatal(err)
	}
	var objects []runtime.Object
	for _, m := range rendered {
		if m["kind"] == "CustomResourceDefinition" {
			continue // the dynamic client's (see Dynamic)
		}
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
		if err != nil {
			t.Fatalf("decode rendered %v: %v", m["kind"], err)
		}
		if d, ok := obj.(*appsv1.Deployment); ok && d.Name == install.ControllerName {
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}
			objects = append(objects, controllerPod(d))
		}
		objects = append(objects, obj)
	}
	return objects, issuer
}

func controllerPod(d *appsv1.Deployment) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-7d9f8-abcde", Namespace: d.Namespace, Labels: d.Spec.Template.Labels},
		Spec:       d.Spec.Template.Spec,
		Status:     readyStatus(true),
	}
}

func readyStatus(ready bool) corev1.PodStatus {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	return corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}}
}

// MeshedPod is a pod with the proxy's native sidecar, annotated with proxyVersion.
func MeshedPod(ns, name, proxyVersion string, ready bool) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Annotations: map[string]string{inject.AnnotationProxyVersion: proxyVersion},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: inject.InitContainerName, Image: version.Image("", "mesh-proxy-init")},
				{Name: inject.ProxyContainerName, Image: version.Image("", "mesh-proxy"), RestartPolicy: &always},
			},
			Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}},
		},
		Status: readyStatus(ready),
	}
}

// SetReady sets the Ready condition of a pod in the fake cluster.
func SetReady(t testing.TB, client *fake.Clientset, ns, name string, ready bool) {
	t.Helper()
	pod, err := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	p := pod.(*corev1.Pod).DeepCopy()
	p.Status = readyStatus(ready)
	if err := client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, ns); err != nil {
		t.Fatal(err)
	}
}

// ControllerPodName is the name of the controller pod in a fake cluster.
const ControllerPodName = install.ControllerName + "-7d9f8-abcde"
