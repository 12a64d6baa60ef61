package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lightmesh/lightmesh/internal/version"
)

// TestProxyInitImageRunsIptables builds mesh-proxy-init from this machine's iptables, unpacks
// its layer and runs both backends inside it with chroot: the image must carry everything
// iptables loads. It needs root (chroot) and iptables on the machine.
func TestProxyInitImageRunsIptables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: TestProxyInitImageRunsIptables needs root (chroot); run `go test ./hack/imagebuild/` as root to check that the mesh-proxy-init image runs iptables")
	}
	for _, n := range []string{"iptables-legacy", "iptables-nft", "ldd"} {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("SKIPPED: TestProxyInitImageRunsIptables needs %s on this machine (apt-get install iptables)", n)
		}
	}
	bin := fakeBinDir(t, "mesh-proxy-init")
	built := runImagebuild(t, "--bin-dir", bin, "--out", t.TempDir(), "--only", "mesh-proxy-init")
	img, _, _ := readImage(t, built[version.Image("", "mesh-proxy-init")])
	if cf, err := img.ConfigFile(); err != nil || cf.Config.User != "65534" {
		t.Errorf("the proxy-init image should run as nobody (65534); config %v, error %v", cf, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	root := t.TempDir()
	unpack(t, rc, root)

	for _, cmd := range []string{"iptables", "iptables-legacy", "iptables-nft", "ip6tables", "iptables-save", "ip6tables-legacy-restore", "iptables-nft-restore"} {
		out := chroot(t, root, nil, 0, "/usr/sbin/"+cmd, "--version")
		if !strings.Contains(out, "v1.") {
			t.Errorf("%s --version printed %q, want a version", cmd, out)
		}
	}
	if out := chroot(t, root, nil, 0, "/usr/sbin/iptables", "--version"); !strings.Contains(out, "nf_tables") {
		t.Errorf("iptables --version printed %q, want the nf_tables backend by default", out)
	}

	// Real rules, with the extensions proxy-init uses, each backend in a fresh network
	// namespace so the machine's own rules are never touched.
	rules := `*nat
:PROXY_INIT_OUTPUT - [0:0]
-A OUTPUT -p tcp -j PROXY_INIT_OUTPUT
-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -j RETURN
-A PROXY_INIT_OUTPUT -o lo -j RETURN
-A PROXY_INIT_OUTPUT -p tcp -m multiport --dports 22,443 -j RETURN
-A PROXY_INIT_OUTPUT -p tcp -j REDIRECT --to-ports 4140
COMMIT
`
	for _, cmd := range []string{"iptables-nft-restore", "iptables-legacy-restore"} {
		chroot(t, root, strings.NewReader(rules), syscall.CLONE_NEWNET, "/usr/sbin/"+cmd)
	}
}

// chroot runs name inside root (optionally in new namespaces) and returns its output; a
// failure fails the test.
func chroot(t *testing.T, root string, stdin io.Reader, cloneflags uintptr, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Cloneflags: cloneflags}
	cmd.Dir = "/"
	cmd.Env = []string{defaultPath}
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("chroot %s %s %s: %v\n%s", root, name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// unpack extracts a layer tar into dir (directories, regular files and symlinks only).
func unpack(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsLocal(h.Name) {
			t.Fatalf("layer entry %q escapes the layer", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode&0o777))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("layer entry %s has unexpected type %q", h.Name, h.Typeflag)
		}
	}
}

// modeBits converts the sticky bit of a tar mode to Go's.
func modeBits(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}
