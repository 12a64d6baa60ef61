package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/version"
)

const testRegistry = "registry.test/mesh"

func TestImages(t *testing.T) {
	bin := fakeBinDir(t, "mesh-controller", "mesh-proxy", "mesh-web", "pause")
	coredns := filepath.Join(t.TempDir(), "coredns-binary")
	writeFile(t, coredns, "fake binary coredns")

	cases := []struct {
		only, wantRef, wantPath, wantUser, wantContent string
	}{
		{"mesh-controller", "registry.test/mesh/mesh-controller:" + version.Version, "/usr/local/bin/mesh-controller", "65532", "fake binary mesh-controller"},
		{"mesh-proxy", "registry.test/mesh/mesh-proxy:" + version.Version, "/usr/local/bin/mesh-proxy", "2102", "fake binary mesh-proxy"},
		{"mesh-web", "registry.test/mesh/mesh-web:" + version.Version, "/usr/local/bin/mesh-web", "65532", "fake binary mesh-web"},
		{"pause", "registry.test/mesh/pause:3.10", "/pause", "65535:65535", "fake binary pause"},
		{"coredns", "registry.test/mesh/coredns:v9.8.7", "/coredns", "", "fake binary coredns"},
	}
	for _, c := range cases {
		t.Run(c.only, func(t *testing.T) {
			out := t.TempDir()
			built := runImagebuild(t, "--bin-dir", bin, "--out", out, "--registry", testRegistry+"/",
				"--only", c.only, "--coredns", coredns, "--coredns-version", "v9.8.7")
			wantTarball := filepath.Join(out, c.only+".tar")
			if want := map[string]string{c.wantRef: wantTarball}; !reflect.DeepEqual(built, want) {
				t.Fatalf("printed %v, want %v", built, want)
			}
			img, tags, files := readImage(t, wantTarball)
			if want := []string{c.wantRef}; !reflect.DeepEqual(tags, want) {
				t.Errorf("tarball tags = %v, want %v", tags, want)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
				t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
			}
			if want := []string{c.wantPath}; !reflect.DeepEqual(cf.Config.Entrypoint, want) {
				t.Errorf("entrypoint = %q, want %q", cf.Config.Entrypoint, want)
			}
			if cf.Config.User != c.wantUser {
				t.Errorf("user = %q, want %q", cf.Config.User, c.wantUser)
			}
			if len(cf.Config.Env) != 1 || !strings.HasPrefix(cf.Config.Env[0], "PATH=") {
				t.Errorf("env = %q, want one PATH", cf.Config.Env)
			}
			if got := regularFiles(files); !reflect.DeepEqual(got, []string{c.wantPath}) {
				t.Errorf("layer files = %q, want only %s", got, c.wantPath)
			}
			f := files[c.wantPath]
			if f.mode != 0o755 || f.data != c.wantContent {
				t.Errorf("%s: mode %o content %q, want 0755 %q", c.wantPath, f.mode, f.data, c.wantContent)
			}
			for dir := filepath.Dir(c.wantPath); dir != "/"; dir = filepath.Dir(dir) {
				if files[dir].typ != tar.TypeDir || files[dir].mode != 0o755 {
					t.Errorf("parent %s of %s is %+v, want a 0755 directory", dir, c.wantPath, files[dir])
				}
			}
		})
	}
}

func TestDefaultImagesAndOrder(t *testing.T) {
	bin := fakeBinDir(t, "mesh-controller", "mesh-proxy", "mesh-web", "e2e-echo",
		"demo-user-service", "demo-order-service", "demo-traffic", "pause")
	opts := options{binDir: bin, outDir: t.TempDir(), host: fakeHost(t), corednsVersion: DefaultCoreDNSVersion}
	writeFile(t, filepath.Join(bin, "mesh-proxy-init"), "fake binary mesh-proxy-init")
	var out, errOut bytes.Buffer
	if err := execute(opts, &out, &errOut); err != nil {
		t.Fatalf("execute: %v\n%s", err, errOut.String())
	}
	var refs []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		refs = append(refs, strings.Fields(line)[0])
	}
	want := []string{
		"ghcr.io/lightmesh/mesh-controller:" + version.Version,
		"ghcr.io/lightmesh/mesh-proxy:" + version.Version,
		"ghcr.io/lightmesh/mesh-proxy-init:" + version.Version,
		"ghcr.io/lightmesh/mesh-web:" + version.Version,
		"ghcr.io/lightmesh/e2e-echo:" + version.Version,
		"ghcr.io/lightmesh/demo-user-service:" + version.Version,
		"ghcr.io/lightmesh/demo-order-service:" + version.Version,
		"ghcr.io/lightmesh/demo-traffic:" + version.Version,
		"ghcr.io/lightmesh/pause:3.10",
	}
	if !reflect.DeepEqual(refs, want) {
		t.Errorf("without --only and --coredns built %q, want %q", refs, want)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	bin := fakeBinDir(t, "mesh-proxy", "pause")
	build := func() map[string][32]byte {
		t.Helper()
		sums := map[string][32]byte{}
		for ref, p := range runImagebuild(t, "--bin-dir", bin, "--out", t.TempDir(), "--only", "mesh-proxy,pause") {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sums[ref] = sha256.Sum256(data)
		}
		return sums
	}
	first := build()
	if len(first) != 2 {
		t.Fatalf("built %d images, want 2", len(first))
	}

	// Another output directory and newer binary mtimes: the same bytes.
	later := time.Now().Add(time.Hour)
	for _, n := range []string{"mesh-proxy", "pause"} {
		if err := os.Chtimes(filepath.Join(bin, n), later, later); err != nil {
			t.Fatal(err)
		}
	}
	if second := build(); !reflect.DeepEqual(first, second) {
		t.Errorf("rebuilding identical inputs changed the tarballs:\nfirst  %x\nsecond %x", first, second)
	}

	// A changed binary changes its image and only its image.
	writeFile(t, filepath.Join(bin, "mesh-proxy"), "fake binary mesh-proxy, version 2")
	third := build()
	proxy := version.Image("", "mesh-proxy")
	if third[proxy] == first[proxy] {
		t.Errorf("changing the mesh-proxy binary did not change its image")
	}
	if pause := PauseRef(""); third[pause] != first[pause] {
		t.Errorf("changing the mesh-proxy binary changed the pause image")
	}
}

func TestImageDigestIsStable(t *testing.T) {
	bin := fakeBinDir(t, "mesh-web")
	digest := func() string {
		t.Helper()
		built := runImagebuild(t, "--bin-dir", bin, "--out", t.TempDir(), "--only", "mesh-web")
		img, _, _ := readImage(t, built[version.Image("", "mesh-web")])
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	if a, b := digest(), digest(); a != b {
		t.Errorf("digests differ between identical builds: %s and %s", a, b)
	}
}

func TestMissingBinary(t *testing.T) {
	bin := fakeBinDir(t, "mesh-controller")
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run([]string{"--bin-dir", bin, "--out", out, "--only", "mesh-controller,mesh-web"}, &stdout, &stderr)
	if err == nil {
		t.Fatal("building with mesh-web missing succeeded")
	}
	missing := filepath.Join(bin, "mesh-web")
	if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("error %q does not name %s and `make build`", err, missing)
	}
	if _, statErr := os.Stat(filepath.Join(out, "mesh-web.tar")); statErr == nil {
		t.Errorf("a mesh-web tarball was written although its binary is missing")
	}
}

func TestMissingPauseBinary(t *testing.T) {
	bin := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run([]string{"--bin-dir", bin, "--out", t.TempDir(), "--only", "pause"}, &stdout, &stderr)
	missing := filepath.Join(bin, "pause")
	if err == nil || !strings.Contains(err.Error(), missing+" is missing") || !strings.Contains(err.Error(), "./hack/pause") {
		t.Errorf("error = %v, want one naming %s and ./hack/pause", err, missing)
	}
}

func TestMissingCoreDNSBinary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "coredns")
	var stdout, stderr bytes.Buffer
	err := run([]string{"--out", t.TempDir(), "--only", "coredns", "--coredns", missing}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "build-coredns.sh") {
		t.Errorf("error = %v, want one naming %s and hack/build-coredns.sh", err, missing)
	}
}

func TestPrintRefs(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--print-pause-ref"}, "ghcr.io/lightmesh/pause:3.10\n"},
		{[]string{"--print-pause-ref", "--registry", "localhost:5000/x"}, "localhost:5000/x/pause:3.10\n"},
		{[]string{"--print-coredns-ref"}, "ghcr.io/lightmesh/coredns:v1.14.7\n"},
		{[]string{"--print-coredns-ref", "--registry", "r.test", "--coredns-version", "v1.2.3"}, "r.test/coredns:v1.2.3\n"},
		{[]string{"--print-ref", "mesh-proxy-init", "--registry", "r.test"}, "r.test/mesh-proxy-init:" + version.Version + "\n"},
		{[]string{"--print-ref", "pause"}, "ghcr.io/lightmesh/pause:3.10\n"},
		{[]string{"--print-components"}, "mesh-controller,mesh-proxy,mesh-proxy-init,mesh-web\n"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		if err := run(c.args, &out, &errOut); err != nil {
			t.Errorf("imagebuild %q: %v", c.args, err)
			continue
		}
		if out.String() != c.want {
			t.Errorf("imagebuild %q printed %q, want %q", c.args, out.String(), c.want)
		}
	}
}

func TestFlagErrors(t *testing.T) {
	bin := fakeBinDir(t, "mesh-proxy")
	cases := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--bin-dir", bin}, "--out is required"},
		{[]string{"--out", t.TempDir(), "--only", "mesh-proxy"}, "--bin-dir is required"},
		{[]string{"--bin-dir", bin, "--out", t.TempDir(), "--only", "mesh-sidecar"}, `unknown image "mesh-sidecar"`},
		{[]string{"--bin-dir", bin, "--out", t.TempDir(), "--only", "coredns"}, "needs --coredns"},
		{[]string{"--bin-dir", bin, "--out", t.TempDir(), "extra"}, "unexpected arguments"},
		{[]string{"--print-ref", "mesh-sidecar"}, `unknown image "mesh-sidecar"`},
		{[]string{"--bin-dir", bin, "--out", t.TempDir(), "--only", "mesh-proxy", "--registry", "Bad Registry"}, "invalid"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := run(c.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("imagebuild %q: error = %v, want one containing %q", c.args, err, c.wantErr)
		}
		if out.Len() != 0 {
			t.Errorf("imagebuild %q printed %q on failure", c.args, out.String())
		}
	}
}
