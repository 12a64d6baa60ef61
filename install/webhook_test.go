package install

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/lightmesh/lightmesh/internal/identity"
)

// The webhook's serving certificate chains to the trust anchors for the Service's DNS name,
// is an ECDSA P-256 server certificate, and is the same every time for the same issuer.
func TestWebhookCertificate(t *testing.T) {
	id := fixtureIdentity(t)
	a, err := WebhookCertificate(id, "mesh", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	b, err := WebhookCertificate(id, "mesh", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.CertificatePEM, b.CertificatePEM) || !bytes.Equal(a.KeyPEM, b.KeyPEM) {
		t.Error("two certificates for the same issuer and namespace differ")
	}
	if !bytes.Equal(a.CABundlePEM, id.TrustAnchorsPEM) {
		t.Error("the CA bundle is not the trust anchors")
	}
	pair, err := tls.X509KeyPair(a.CertificatePEM, a.KeyPEM)
	if err != nil {
		t.Fatalf("tls.crt and tls.key are not a pair: %v", err)
	}
	if key, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok || key.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", pair.PrivateKey)
	}
	certs, err := identity.DecodeCertificatesPEM(a.CertificatePEM)
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := identity.ParseTrustAnchors(a.CABundlePEM)
	if err != nil {
		t.Fatal(err)
	}
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, anchor := range anchors {
		roots.AddCert(anchor)
	}
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	for _, name := range []string{"webhook.mesh.svc", "webhook.mesh.svc.cluster.local"} {
		if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", name, err)
		}
	}
	if err := certs[0].VerifyHostname("webhook.other.svc"); err == nil {
		t.Error("the certificate is valid for another namespace's webhook")
	}
	other, err := WebhookCertificate(id, "other", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.KeyPEM, a.KeyPEM) {
		t.Error("two namespaces got the same key")
	}
	// Generated identity material works the same way.
	generated, err := GenerateIdentity("cluster.local", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WebhookCertificate(generated, "mesh", "cluster.local"); err != nil {
		t.Fatal(err)
	}
}

func TestMutatingWebhookConfiguration(t *testing.T) {
	v := DefaultValues()
	v.Namespace = "mesh"
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	objects := render(t, v)
	find(t, objects, "MutatingWebhookConfiguration", "lightmesh-proxy-injector-mesh", &cfg)
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(cfg.Webhooks))
	}
	w := cfg.Webhooks[0]
	svc := w.ClientConfig.Service
	if svc == nil || svc.Name != "webhook" || svc.Namespace != "mesh" || *svc.Path != "/inject" || *svc.Port != 443 {
		t.Errorf("client config %+v, want Service mesh/webhook:443 /inject", svc)
	}
	if !bytes.Equal(w.ClientConfig.CABundle, fixtureIdentity(t).TrustAnchorsPEM) {
		t.Error("caBundle is not the trust anchors")
	}
	if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.TimeoutSeconds != 10 || !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("failurePolicy %s, sideEffects %s, timeout %d, versions %v", *w.FailurePolicy, *w.SideEffects, *w.TimeoutSeconds, w.AdmissionReviewVersions)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
		t.Errorf("rules %+v, want pods CREATE", w.Rules)
	}
	sel := w.NamespaceSelector.MatchExpressions
	if len(sel) != 1 || sel[0].Key != "kubernetes.io/metadata.name" || sel[0].Operator != "NotIn" || !slices.Equal(sel[0].Values, []string{"kube-system", "mesh"}) {
		t.Errorf("namespace selector %+v, want kubernetes.io/metadata.name NotIn kube-system, mesh", sel)
	}
	if last := objects[len(objects)-1]; last["kind"] != "MutatingWebhookConfiguration" {
		t.Errorf("the last object is a %v; the webhook configuration goes last", last["kind"])
	}

	if err := v.Set("webhook.failurePolicy=Fail"); err != nil {
		t.Fatal(err)
	}
	find(t, render(t, v), "MutatingWebhookConfiguration", "lightmesh-proxy-injector-mesh", &cfg)
	if *cfg.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy %s, want Fail", *cfg.Webhooks[0].FailurePolicy)
	}
	v.Webhook.FailurePolicy = "Sometimes"
	if err := v.Validate(); err == nil {
		t.Error("webhook.failurePolicy Sometimes was accepted")
	}
}

// The injector runs next to identity (and destination) with the webhook Secret, and may read lightmesh-config
// and nothing else of its namespace.
func TestInjectorContainerAndRole(t *testing.T) {
	objects := render(t, DefaultValues())
	var d appsv1.Deployment
	find(t, objects, "Deployment", ControllerName, &d)
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 4 || spec.Containers[1].Name != "injector" {
		t.Fatalf("containers %d, want identity, injector, destination and stats", len(spec.Containers))
	}
	c := spec.Containers[1]
	wantArgs := []string{"injector", "--addr", ":8443", "--admin-addr", ":9995", "--tls-dir", WebhookTLSDir, "--control-plane-namespace", "lightmesh", "--log-level", "info"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %v, want %v", c.Args, wantArgs)
	}
	if c.ReadinessProbe.HTTPGet.Port.String() != "injector-admin" || c.Ports[0].ContainerPort != WebhookTargetPort || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("injector container %+v", c)
	}
	if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == "webhook-tls" && v.Secret != nil && v.Secret.SecretName == WebhookSecretName
	}) {
		t.Error("no webhook-tls volume of the lightmesh-webhook-tls Secret")
	}
	var secret corev1.Secret
	find(t, objects, "Secret", WebhookSecretName, &secret)
	if _, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"]); err != nil || secret.Type != corev1.SecretTypeTLS {
		t.Errorf("the webhook Secret is not a TLS pair: %v", err)
	}
	var role rbacv1.Role
	find(t, objects, "Role", ConfigReaderName, &role)
	want := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{ConfigMapName}, Verbs: []string{"get"}}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Verbs, want.Verbs) || !slices.Equal(role.Rules[0].ResourceNames, want.ResourceNames) || !slices.Equal(role.Rules[0].Resources, want.Resources) {
		t.Errorf("role rules %+v, want %+v", role.Rules, want)
	}
	var binding rbacv1.RoleBinding
	find(t, objects, "RoleBinding", ConfigReaderName, &binding)
	if binding.RoleRef.Name != ConfigReaderName || binding.Subjects[0].Name != ControllerName {
		t.Errorf("role binding %+v", binding)
	}
}

// The destination service runs as the third container, serving certificate from the issuer.
func TestDestinationContainer(t *testing.T) {
	objects := render(t, DefaultValues())
	var d appsv1.Deployment
	find(t, objects, "Deployment", ControllerName, &d)
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 4 || spec.Containers[2].Name != "destination" || spec.Containers[3].Name != "stats" {
		t.Fatalf("containers %d, want destination third", len(spec.Containers))
	}
	c := spec.Containers[2]
	if c.Args[0] != "destination" || !slices.Contains(c.Args, "--issuer-dir") || !slices.Contains(c.Args, IssuerDir) ||
		c.Ports[0].ContainerPort != DestinationPort || c.ReadinessProbe.HTTPGet.Port.String() != "dest-admin" {
		t.Errorf("destination container %+v", c)
	}
}
