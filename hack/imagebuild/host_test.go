package main

import (
	"archive/tar"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// fakeHost builds a small Debian-like tree: merged /usr (/lib -> usr/lib), iptables commands
// linked to the two multi-call binaries, the plain names going through /etc/alternatives to
// the legacy backend (so the test sees that the image's default is nft regardless), an xtables
// module directory with a symlinked module, and a loader reached through two symlinks.
func fakeHost(t *testing.T) host {
	t.Helper()
	root := t.TempDir()
	file := func(p, content string) { writeFile(t, filepath.Join(root, p), content) }
	link := func(p, target string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	link("/lib", "usr/lib")
	link("/lib64", "usr/lib64")
	link("/sbin", "usr/sbin")
	file("/usr/sbin/xtables-nft-multi", "nft multi")
	file("/usr/sbin/xtables-legacy-multi", "legacy multi")
	plain, backends := iptablesCommands()
	for _, n := range backends {
		target := "xtables-nft-multi"
		if strings.Contains(n, "-legacy") {
			target = "xtables-legacy-multi"
		}
		link("/usr/sbin/"+n, target)
	}
	for _, n := range plain {
		legacy := strings.Replace(n, "tables", "tables-legacy", 1)
		link("/usr/sbin/"+n, "/etc/alternatives/"+n)
		link("/etc/alternatives/"+n, "/usr/sbin/"+legacy)
	}
	file("/usr/lib/x86_64-linux-gnu/xtables/libxt_NAT.so", "nat module")
	link("/usr/lib/x86_64-linux-gnu/xtables/libxt_REDIRECT.so", "libxt_NAT.so")
	file("/usr/lib/x86_64-linux-gnu/xtables/libxt_owner.so", "owner module")
	file("/usr/lib/x86_64-linux-gnu/libxtables.so.12.7.0", "libxtables")
	link("/usr/lib/x86_64-linux-gnu/libxtables.so.12", "libxtables.so.12.7.0")
	file("/usr/lib/x86_64-linux-gnu/libc.so.6", "libc")
	file("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "loader")
	link("/usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	file("/etc/protocols", "tcp 6 TCP")

	return host{root: root, libs: func(p string) ([]string, error) {
		rel, err := filepath.Rel(root, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("libraries asked for %s, outside the fake host %s", p, root)
		}
		if strings.Contains(rel, "xtables/") {
			return []string{"/lib/x86_64-linux-gnu/libxtables.so.12", "/lib/x86_64-linux-gnu/libc.so.6"}, nil
		}
		return []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}, nil
	}}
}

func TestAddIptablesFromFakeHost(t *testing.T) {
	l := newLayer()
	if err := addIptables(l, fakeHost(t)); err != nil {
		t.Fatal(err)
	}
	type want struct {
		typ    byte
		mode   int64
		data   string
		target string
	}
	wants := map[string]want{
		"/usr/sbin/xtables-nft-multi":                         {tar.TypeReg, 0o755, "nft multi", ""},
		"/usr/sbin/xtables-legacy-multi":                      {tar.TypeReg, 0o755, "legacy multi", ""},
		"/usr/sbin/iptables-nft":                              {tar.TypeSymlink, 0o777, "", "xtables-nft-multi"},
		"/usr/sbin/ip6tables-legacy-restore":                  {tar.TypeSymlink, 0o777, "", "xtables-legacy-multi"},
		"/usr/sbin/iptables":                                  {tar.TypeSymlink, 0o777, "", "iptables-nft"},
		"/usr/sbin/iptables-save":                             {tar.TypeSymlink, 0o777, "", "iptables-nft-save"},
		"/usr/sbin/ip6tables-restore":                         {tar.TypeSymlink, 0o777, "", "ip6tables-nft-restore"},
		"/usr/lib/x86_64-linux-gnu/xtables":                   {tar.TypeDir, 0o755, "", ""},
		"/usr/lib/x86_64-linux-gnu/xtables/libxt_NAT.so":      {tar.TypeReg, 0o755, "nat module", ""},
		"/usr/lib/x86_64-linux-gnu/xtables/libxt_REDIRECT.so": {tar.TypeSymlink, 0o777, "", "libxt_NAT.so"},
		"/usr/lib/x86_64-linux-gnu/xtables/libxt_owner.so":    {tar.TypeReg, 0o755, "owner module", ""},
		"/lib":   {tar.TypeSymlink, 0o777, "", "usr/lib"},
		"/lib64": {tar.TypeSymlink, 0o777, "", "usr/lib64"},
		"/usr/lib/x86_64-linux-gnu/libxtables.so.12":     {tar.TypeSymlink, 0o777, "", "libxtables.so.12.7.0"},
		"/usr/lib/x86_64-linux-gnu/libxtables.so.12.7.0": {tar.TypeReg, 0o755, "libxtables", ""},
		"/usr/lib/x86_64-linux-gnu/libc.so.6":            {tar.TypeReg, 0o755, "libc", ""},
		"/usr/lib64/ld-linux-x86-64.so.2":                {tar.TypeSymlink, 0o777, "", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": {tar.TypeReg, 0o755, "loader", ""},
		"/etc/protocols": {tar.TypeReg, 0o755, "tcp 6 TCP", ""},
		"/run":           {tar.TypeDir, 0o1777, "", ""},
		"/tmp":           {tar.TypeDir, 0o1777, "", ""},
	}
	for p, w := range wants {
		e, ok := l.entries[p]
		if !ok {
			t.Errorf("%s is missing from the layer", p)
			continue
		}
		if got := (want{e.typ, e.mode, string(e.data), e.target}); got != w {
			t.Errorf("%s = %+v, want %+v", p, got, w)
		}
	}
	// The multi-call binaries, and nothing else, carry CAP_NET_ADMIN and CAP_NET_RAW, so a
	// non-root proxy-init can write rules.
	for p, e := range l.entries {
		wantCaps := p == "/usr/sbin/xtables-nft-multi" || p == "/usr/sbin/xtables-legacy-multi"
		got, has := e.xattrs[securityCapability]
		if has != wantCaps || (wantCaps && got != netAdminNetRawCapability) {
			t.Errorf("%s: security.capability %x (set %v), want set %v", p, got, has, wantCaps)
		}
	}
	// Nothing from /etc/alternatives (the image's own default is nft) and no /sbin link (the
	// image keeps everything in /usr/sbin).
	var unexpected []string
	for p := range l.entries {
		if strings.HasPrefix(p, "/etc/alternatives") || p == "/sbin" {
			unexpected = append(unexpected, p)
		}
	}
	sort.Strings(unexpected)
	if len(unexpected) > 0 {
		t.Errorf("unexpected layer entries %q", unexpected)
	}
	// Every command of both backends is present.
	plain, backends := iptablesCommands()
	if len(plain) != 6 || len(backends) != 12 {
		t.Errorf("iptablesCommands() = %d plain and %d backend names, want 6 and 12", len(plain), len(backends))
	}
	for _, n := range append(plain, backends...) {
		if e := l.entries["/usr/sbin/"+n]; e == nil || e.typ != tar.TypeSymlink {
			t.Errorf("/usr/sbin/%s is not a symlink in the layer", n)
		}
	}
}

func TestAddIptablesWithoutIptables(t *testing.T) {
	h := fakeHost(t)
	if err := os.Remove(filepath.Join(h.root, "/usr/sbin/iptables-legacy")); err != nil {
		t.Fatal(err)
	}
	err := addIptables(newLayer(), h)
	if err == nil || !strings.Contains(err.Error(), "iptables-legacy not found") || !strings.Contains(err.Error(), "apt-get install iptables") {
		t.Errorf("error = %v, want one naming iptables-legacy and apt-get install iptables", err)
	}
}

func TestAddIptablesWithoutModules(t *testing.T) {
	h := fakeHost(t)
	if err := os.RemoveAll(filepath.Join(h.root, "/usr/lib/x86_64-linux-gnu/xtables")); err != nil {
		t.Fatal(err)
	}
	err := addIptables(newLayer(), h)
	if err == nil || !strings.Contains(err.Error(), "no xtables module directory") {
		t.Errorf("error = %v, want one saying no xtables module directory was found", err)
	}
}

func TestParseLdd(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffc1d9f6000)
	libxtables.so.12 => /lib/x86_64-linux-gnu/libxtables.so.12 (0x00007f0d1a8c2000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0d1a6e1000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0d1a8f9000)
`
	got, err := parseLdd("/usr/sbin/xtables-legacy-multi", out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/lib/x86_64-linux-gnu/libxtables.so.12", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseLdd = %q, want %q", got, want)
	}

	_, err = parseLdd("/x", "\tlibmissing.so.1 => not found\n")
	if err == nil || !strings.Contains(err.Error(), "libmissing.so.1") {
		t.Errorf("parseLdd with a missing library: error = %v, want one naming libmissing.so.1", err)
	}
}

func TestLayerRejectsConflicts(t *testing.T) {
	l := newLayer()
	if err := l.addSymlink("/lib", "usr/lib"); err != nil {
		t.Fatal(err)
	}
	if err := l.addFile("/lib/x/libc.so.6", 0o644, []byte("libc")); err == nil {
		t.Errorf("adding a file below the symlink /lib succeeded; the tar would write through a symlink")
	}
	if err := l.addFile("/etc/a", 0o644, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := l.addFile("/etc/a", 0o644, []byte("a")); err != nil {
		t.Errorf("adding the same file twice: %v", err)
	}
	if err := l.addFile("/etc/a", 0o644, []byte("b")); err == nil {
		t.Errorf("adding /etc/a twice with different content succeeded")
	}
	if err := l.addDir("/etc", 0o700); err != nil {
		t.Errorf("setting the mode of the implicit directory /etc: %v", err)
	}
	if l.entries["/etc"].mode != 0o700 {
		t.Errorf("/etc mode = %o, want 0700", l.entries["/etc"].mode)
	}
	if err := l.addDir("/etc", 0o755); err == nil {
		t.Errorf("adding /etc again with another explicit mode succeeded")
	}
}
