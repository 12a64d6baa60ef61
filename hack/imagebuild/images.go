package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lightmesh/lightmesh/internal/version"
)

// PauseTag is the tag of the sandbox image. It is fixed (not lightmesh's version) because
// containerd's sandbox_image setting names it; --print-pause-ref prints the full reference.
const PauseTag = "3.10"

// DefaultCoreDNSVersion is the CoreDNS version tagged when --coredns-version is not given; it
// matches COREDNS_VERSION in hack/lib.sh.
const DefaultCoreDNSVersion = "v1.14.7"

// Image names besides the lightmesh components of version.Components.
const (
	pauseName   = "pause"
	corednsName = "coredns"
)

// appImages are the programs the end-to-end tests and the demo run in pods; like the
// components, each is one binary from --bin-dir at /usr/local/bin/<name>, tagged with
// lightmesh's version, running as a non-root user.
var appImages = []string{"e2e-echo", "demo-user-service", "demo-order-service", "demo-traffic"}

// Users the images run as. mesh-proxy runs as the proxy UID whose traffic proxy-init's rules
// let through; mesh-proxy-init runs as "nobody": its iptables binaries carry the file
// capabilities NET_ADMIN and NET_RAW, which the pod must add.
const (
	proxyUID    = "2102"
	nonrootUser = "65532"
	// proxyInitUser is nobody.
	proxyInitUser = "65534"
	pauseUser     = "65535:65535" // as Kubernetes' own pause image
)

// defaultPath is the PATH of every image.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PauseRef returns the sandbox image's reference in registry (version.DefaultRegistry when
// empty).
func PauseRef(registry string) string { return ref(registry, pauseName, PauseTag) }

// CoreDNSRef returns the CoreDNS image's reference in registry for CoreDNS version v.
func CoreDNSRef(registry, v string) string { return ref(registry, corednsName, v) }

func ref(registry, image, tag string) string {
	if registry == "" {
		registry = version.DefaultRegistry
	}
	return strings.TrimSuffix(registry, "/") + "/" + image + ":" + tag
}

// imageRef returns the reference of image n (a component, pause or coredns).
func (o options) imageRef(n string) string {
	switch n {
	case pauseName:
		return PauseRef(o.registry)
	case corednsName:
		return CoreDNSRef(o.registry, o.corednsVersion)
	}
	return version.Image(o.registry, n)
}

// imageSpec is one image to build: a single layer and the config that runs it.
type imageSpec struct {
	name       string // image name, also the tarball's base name
	ref        string
	layer      *layer
	entrypoint []string
	user       string // empty: root
}

// allImages lists every image name imagebuild knows, in build order.
func allImages() []string {
	all := append(append([]string{}, version.Components...), appImages...)
	return append(all, pauseName, corednsName)
}

// planImage returns the spec of image n from the options, reading its binary.
func planImage(opts options, n string) (imageSpec, error) {
	switch n {
	case pauseName:
		p := filepath.Join(opts.binDir, pauseName)
		data, err := readBinary(p, "CGO_ENABLED=0 go build -o "+p+" ./hack/pause")
		if err != nil {
			return imageSpec{}, err
		}
		l := newLayer()
		if err := l.addFile("/pause", 0o755, data); err != nil {
			return imageSpec{}, err
		}
		return imageSpec{name: n, ref: opts.imageRef(n), layer: l, entrypoint: []string{"/pause"}, user: pauseUser}, nil
	case corednsName:
		if opts.coredns == "" {
			return imageSpec{}, fmt.Errorf("the coredns image needs --coredns BINARY (build it with hack/build-coredns.sh)")
		}
		data, err := readBinary(opts.coredns, "hack/build-coredns.sh")
		if err != nil {
			return imageSpec{}, err
		}
		l := newLayer()
		if err := l.addFile("/coredns", 0o755, data); err != nil {
			return imageSpec{}, err
		}
		return imageSpec{name: n, ref: opts.imageRef(n), layer: l, entrypoint: []string{"/coredns"}}, nil
	}
	if !isComponent(n) && !slices.Contains(appImages, n) {
		return imageSpec{}, fmt.Errorf("unknown image %q: choose from %s", n, strings.Join(allImages(), ", "))
	}
	data, err := readBinary(filepath.Join(opts.binDir, n), "make build")
	if err != nil {
		return imageSpec{}, err
	}
	bin := "/usr/local/bin/" + n
	l := newLayer()
	if err := l.addFile(bin, 0o755, data); err != nil {
		return imageSpec{}, err
	}
	spec := imageSpec{name: n, ref: opts.imageRef(n), layer: l, entrypoint: []string{bin}, user: nonrootUser}
	switch n {
	case "mesh-proxy":
		spec.user = proxyUID
	case "mesh-proxy-init":
		spec.user = proxyInitUser
		if err := addIptables(l, opts.host); err != nil {
			return imageSpec{}, err
		}
	}
	return spec, nil
}

func isComponent(n string) bool { return slices.Contains(version.Components, n) }

// readBinary reads a binary the image carries; a missing file is an error naming the
// command that builds it.
func readBinary(p, builder string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is missing: build it with `%s` first", p, builder)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return data, nil
}

// buildImage turns a spec into a linux image for this machine's architecture, with every
// time fixed so that the same inputs give the same digest.
func buildImage(spec imageSpec) (v1.Image, error) {
	layer, err := spec.layer.image()
	if err != nil {
		return nil, fmt.Errorf("building the layer of %s: %w", spec.name, err)
	}
	cf, err := empty.Image.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: spec.entrypoint,
		Env:        []string{defaultPath},
		User:       spec.user,
		WorkingDir: "/",
	}
	img, err := mutate.ConfigFile(empty.Image, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "lightmesh hack/imagebuild " + spec.name,
		},
	})
}

// writeImage builds spec and writes it to outDir/<name>.tar in docker-save format (what
// `ctr images import` reads), through a temporary file so a failed build leaves no tarball.
// It returns the tarball's absolute path.
func writeImage(spec imageSpec, outDir string) (string, error) {
	tag, err := name.NewTag(spec.ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q is invalid (check --registry): %w", spec.ref, err)
	}
	img, err := buildImage(spec)
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(outDir, spec.name+".tar"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", fmt.Errorf("creating the output directory: %w", err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return out, nil
}
