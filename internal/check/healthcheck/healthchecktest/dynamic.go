package healthchecktest

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/lightmesh/lightmesh/install"
)

// CRDResource is the resource of CustomResourceDefinitions.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Dynamic is a fake dynamic client holding objects (CRDs, custom resources), which knows
// the list kinds of CRDs and of every policy kind at each version install serves.
func Dynamic(objects ...runtime.Object) *dynamicfake.FakeDynamicClient {
	lists := map[schema.GroupVersionResource]string{CRDResource: "CustomResourceDefinitionList"}
	for _, c := range install.CRDs() {
		for _, v := range append([]string{"v1alpha3", "v1beta1"}, c.Versions...) {
			lists[schema.GroupVersionResource{Group: c.Group, Version: v, Resource: c.Plural}] = c.Kind + "List"
		}
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists, objects...)
}

// InstalledCRDs are the CRDs mesh install renders, as the API server holds them.
func InstalledCRDs() []runtime.Object {
	var out []runtime.Object
	for _, o := range install.CRDObjects(nil) {
		out = append(out, &unstructured.Unstructured{Object: o})
	}
	return out
}

// Resource is a custom resource of apiVersion and kind with the given status.
func Resource(apiVersion, kind, namespace, name string, status map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	if status != nil {
		u.Object["status"] = status
	}
	return u
}
