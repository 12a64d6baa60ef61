package policy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	meshpolicy "github.com/lightmesh/lightmesh/internal/policy"
)

// secretsResource is the core/v1 Secrets resource.
var secretsResource = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// The keys of a Gateway credential Secret, as Istio reads them: a kubernetes.io/tls Secret
// (tls.crt, tls.key, and ca.crt for MUTUAL), or a generic one (cert, key, cacert); the CA
// may also be in the Secret NAME-cacert.
var (
	certKeys = []string{"tls.crt", "cert"}
	keyKeys  = []string{"tls.key", "key"}
	caKeys   = []string{"ca.crt", "cacert"}
)

// CACertSuffix names the Secret that holds the CA of a MUTUAL server when its credential
// Secret has none (Istio's convention).
const CACertSuffix = "-cacert"

// startSecrets starts, once, the informer of the Secrets of the gateway namespace: only when
// a Gateway needs a credential, so an installation without HTTPS Gateways reads no Secret.
func (w *Watcher) startSecrets(ctx context.Context) {
	if w.opts.GatewayNamespace == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.secrets != nil {
		return
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(w.opts.Client, secretsResource, w.opts.GatewayNamespace, 0, cache.Indexers{}, nil).Informer()
	mark := func(any) { w.markChanged() }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: mark, UpdateFunc: func(_, obj any) { mark(obj) }, DeleteFunc: mark,
	}); err != nil {
		w.log.Error("cannot watch the gateway's Secrets", "namespace", w.opts.GatewayNamespace, "error", err)
		return
	}
	w.secrets = inf
	go inf.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			w.markChanged() // the credentials are known now: report them and send them
		}
	}()
	w.log.Info("watching the Secrets of the gateway's namespace for Gateway credentials", "namespace", w.opts.GatewayNamespace)
}

// secretsSynced reports whether the Secrets of the gateway namespace are read.
func (w *Watcher) secretsSynced() bool {
	w.mu.Lock()
	inf := w.secrets
	w.mu.Unlock()
	return inf != nil && inf.HasSynced()
}

// GatewayCredential returns the TLS credential of the Secret name in namespace (the gateway
// pod's), as an HTTPS Gateway server with tls.credentialName name uses it; mutual also
// requires the CA that verifies client certificates. The error says what is missing.
func (w *Watcher) GatewayCredential(namespace, name string, mutual bool) (*meshpolicy.Credential, error) {
	if w.opts.GatewayNamespace == "" || namespace != w.opts.GatewayNamespace {
		return nil, fmt.Errorf("lightmesh reads Gateway credentials only in the ingress gateway's namespace %q, not %q", w.opts.GatewayNamespace, namespace)
	}
	if !w.secretsSynced() {
		return nil, fmt.Errorf("the controller has not read the Secrets of namespace %s yet (it needs get, list and watch on secrets there: mesh install --ingress grants it)", namespace)
	}
	w.mu.Lock()
	store := w.secrets.GetStore()
	w.mu.Unlock()
	data, err := secretData(store, namespace, name)
	if err != nil {
		return nil, err
	}
	cert, key := first(data, certKeys), first(data, keyKeys)
	if len(cert) == 0 || len(key) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no tls.crt and tls.key: create it with kubectl create secret tls %s -n %s --cert=CERT --key=KEY", namespace, name, name, namespace)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return nil, fmt.Errorf("secret %s/%s: tls.crt and tls.key are not a valid PEM certificate and key pair (%w): replace them", namespace, name, err)
	}
	out := &meshpolicy.Credential{CertChain: string(cert), PrivateKey: string(key)}
	if !mutual {
		return out, nil
	}
	ca := first(data, caKeys)
	if len(ca) == 0 {
		if caData, err := secretData(store, namespace, name+CACertSuffix); err == nil {
			ca = first(caData, caKeys)
		}
	}
	if len(ca) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no ca.crt, and secret %s/%s%s none either: a MUTUAL server needs the CA that signs client certificates", namespace, name, namespace, name, CACertSuffix)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("secret %s/%s: ca.crt holds no PEM certificate: replace it", namespace, name)
	}
	out.CACert = string(ca)
	return out, nil
}

// secretData returns the decoded data of Secret namespace/name in store.
func secretData(store cache.Store, namespace, name string) (map[string][]byte, error) {
	obj, found, err := store.GetByKey(namespace + "/" + name)
	if err != nil || !found {
		return nil, fmt.Errorf("secret %s/%s does not exist: create it with kubectl create secret tls %s -n %s --cert=CERT --key=KEY", namespace, name, name, namespace)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("secret %s/%s: unexpected object %T", namespace, name, obj)
	}
	raw, _, _ := unstructured.NestedStringMap(u.Object, "data")
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("secret %s/%s: data[%s] is not base64: replace it", namespace, name, k)
		}
		out[k] = b
	}
	return out, nil
}

func first(data map[string][]byte, keys []string) []byte {
	for _, k := range keys {
		if v := data[k]; len(v) > 0 {
			return v
		}
	}
	return nil
}

// credentialProblems returns, for each Gateway ("namespace/name") with HTTPS servers, what
// is wrong with their credentials (empty when all are valid). nil until the Secrets are read.
func (w *Watcher) credentialProblems(model *meshpolicy.Model) map[string][]string {
	if w.opts.GatewayNamespace == "" || !w.secretsSynced() {
		return nil
	}
	out := map[string][]string{}
	for _, gw := range model.Gateways {
		for _, s := range gw.Servers {
			if s.TLS == nil || s.TLS.Mode == "" {
				continue
			}
			key := gw.Namespace + "/" + gw.Name
			problems := out[key]
			if _, err := w.GatewayCredential(w.opts.GatewayNamespace, s.TLS.CredentialName, s.TLS.Mode == meshpolicy.GatewayTLSMutual); err != nil {
				problems = append(problems, fmt.Sprintf("the HTTPS server on port %d (hosts %s): %v; the gateway serves no certificate for these hosts, so their TLS handshakes fail", s.Port, strings.Join(s.Hosts, ","), err))
			}
			out[key] = problems
		}
	}
	return out
}

// needsSecrets reports whether some Gateway of model terminates TLS.
func needsSecrets(model *meshpolicy.Model) bool {
	for _, gw := range model.Gateways {
		for _, s := range gw.Servers {
			if s.TLS != nil && s.TLS.Mode != "" {
				return true
			}
		}
	}
	return false
}
