// Package version is the one place that names lightmesh's version and the container images
// built from it. The Makefile, the image builder and `mesh install` all read it here.
package version

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var versionFile string

// Version is lightmesh's version. It comes from the VERSION file beside this source and can be
// overridden at link time with -ldflags "-X github.com/lightmesh/lightmesh/internal/version.Version=...".
var Version = strings.TrimSpace(versionFile)

// DefaultRegistry is the image repository prefix used when none is configured.
const DefaultRegistry = "ghcr.io/lightmesh"

// Components lists the binaries that ship as container images, in build order.
var Components = []string{"mesh-controller", "mesh-proxy", "mesh-proxy-init", "mesh-web"}

// Image returns the reference of a component's image in registry (DefaultRegistry when
// empty), tagged with Version, for example "ghcr.io/lightmesh/mesh-proxy:0.1.0-dev".
func Image(registry, component string) string {
	if registry == "" {
		registry = DefaultRegistry
	}
	return strings.TrimSuffix(registry, "/") + "/" + component + ":" + Version
}
