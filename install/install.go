// Package install renders the lightmesh control-plane manifests that `mesh install` prints:
// the values (defaults, values files, --set), the identity material (generated or loaded),
// and the renderer, which builds typed Kubernetes objects and marshals them deterministically.
// The values are also what the lightmesh-config ConfigMap holds for `mesh inject`.
package install
