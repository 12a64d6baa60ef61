package cmd

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/lightmesh/lightmesh/install"
)

// fakeCluster is a meshCluster over client-go's fakes: typed objects go to the clientset,
// and to the dynamic client too (by their kinds' resources), unstructured ones (CRDs) to the
// dynamic client only.
func fakeCluster(t *testing.T, objects ...runtime.Object) *meshCluster {
	t.Helper()
	var typed, dyn []runtime.Object
	for _, o := range objects {
		if u, ok := o.(*unstructured.Unstructured); ok {
			dyn = append(dyn, u)
			continue
		}
		typed = append(typed, o)
		dyn = append(dyn, o.DeepCopyObject())
	}
	lists := map[schema.GroupVersionResource]string{crdGVR: "CustomResourceDefinitionList"}
	for kind, gvr := range clusterScoped {
		lists[gvr] = kind + "List"
	}
	for _, c := range install.CRDs() {
		lists[schema.GroupVersionResource{Group: c.Group, Version: c.Storage, Resource: c.Plural}] = c.Kind + "List"
	}
	return &meshCluster{
		core:    fake.NewClientset(typed...),
		dynamic: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme.Scheme, lists, dyn...),
	}
}

// installedObjects are the objects `mesh install --set namespace=ns` creates, typed.
func installedObjects(t *testing.T, ns string, set ...string) []runtime.Object {
	t.Helper()
	args := append(installArgs("-o", "json", "--set", "namespace="+ns), prefixAll("--set", set)...)
	out, _, err := execute(t, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var objects []runtime.Object
	for _, raw := range list.Items {
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(raw); err != nil {
			t.Fatal(err)
		}
		if u.GetKind() == "CustomResourceDefinition" {
			objects = append(objects, &u)
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
		if err != nil {
			t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
		objects = append(objects, obj)
	}
	return objects
}

func prefixAll(flag string, values []string) []string {
	var out []string
	for _, v := range values {
		out = append(out, flag, v)
	}
	return out
}

func crdObject(name string, annotations, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("apiextensions.k8s.io/v1")
	u.SetKind("CustomResourceDefinition")
	u.SetName(name)
	u.SetAnnotations(annotations)
	u.SetLabels(labels)
	return u
}

func istiod() *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system", Labels: map[string]string{"app": "istiod"}}}
}

// renderedNames lists the documents of a YAML stream as "Kind/name".
func renderedNames(t *testing.T, stream string) []string {
	t.Helper()
	var names []string
	for _, doc := range documents(stream) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var o struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		names = append(names, o.Kind+"/"+o.Metadata.Name)
	}
	return names
}

// documents splits a YAML stream as WriteYAML writes it (every document after "---").
func documents(stream string) []string {
	return strings.Split(strings.TrimPrefix(stream, "---\n"), "\n---\n")
}
