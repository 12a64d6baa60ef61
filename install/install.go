// Package install renders the lightmesh control-plane manifests that `mesh install` prints:
// embedded templates, their values and the renderer.
package install
