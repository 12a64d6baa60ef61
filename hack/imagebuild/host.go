package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// host is where the proxy-init image's iptables comes from: normally the machine itself
// (root "/"); tests use a fake tree.
type host struct {
	// root is prepended to every host path before it is read.
	root string
	// libs returns the absolute paths (as seen from root) of the shared libraries and dynamic
	// loader that the file at hostPath (already prefixed with root) loads.
	libs func(hostPath string) ([]string, error)
}

// realHost is this machine, with ldd resolving shared libraries.
var realHost = host{root: "/", libs: lddLibs}

// sbinDirs are where the host's iptables commands are looked for.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"}

// etcFiles are the host files iptables reads (protocol, service and ethertype names), copied
// when present.
var etcFiles = []string{"/etc/ethertypes", "/etc/protocols", "/etc/services"}

// iptablesCommands returns every command the proxy-init image provides: iptables, ip6tables
// and their -save/-restore, each in the plain, -nft and -legacy variants.
func iptablesCommands() (plain, backends []string) {
	for _, family := range []string{"iptables", "ip6tables"} {
		for _, op := range []string{"", "-save", "-restore"} {
			plain = append(plain, family+op)
			for _, backend := range []string{"-nft", "-legacy"} {
				backends = append(backends, family+backend+op)
			}
		}
	}
	return plain, backends
}

// securityCapability is the extended attribute that holds a file's capabilities.
const securityCapability = "security.capability"

// netAdminNetRawCapability is the security.capability value of `setcap
// cap_net_admin,cap_net_raw+ep`: a vfs_cap_data revision 2, little-endian: magic and the
// effective flag, then permitted and inheritable for capabilities 0-31 and 32-63. With it the
// iptables binaries get CAP_NET_ADMIN and CAP_NET_RAW in a non-root container whose bounding
// set has them (the pod adds them), so proxy-init need not run as root. It does not work with
// allowPrivilegeEscalation: false (no_new_privs ignores file capabilities).
var netAdminNetRawCapability = string([]byte{
	0x01, 0x00, 0x00, 0x02, // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	0x00, 0x30, 0x00, 0x00, // permitted: CAP_NET_ADMIN (12), CAP_NET_RAW (13)
	0x00, 0x00, 0x00, 0x00, // inheritable
	0x00, 0x00, 0x00, 0x00, // permitted, capabilities 32-63
	0x00, 0x00, 0x00, 0x00, // inheritable, capabilities 32-63
})

// defaultBackend is the backend the plain names (iptables, iptables-save, ...) use, as on
// Debian: iptables -> iptables-nft.
const defaultBackend = "-nft"

// addIptables adds the host's iptables to l under /usr/sbin: the multi-call binaries the
// -nft and -legacy commands resolve to (xtables-nft-multi, xtables-legacy-multi), a symlink
// for every command so argv[0] dispatch works, the xtables extension modules, every shared
// library the binaries and modules load, the dynamic loader, the /etc files iptables reads
// and /run (for the xtables lock) and /tmp. The multi-call binaries carry the file
// capabilities CAP_NET_ADMIN and CAP_NET_RAW so that proxy-init can run as a non-root user.
func addIptables(l *layer, h host) error {
	plain, backends := iptablesCommands()
	var dynamic []string // host paths (without root) of the files whose libraries we need
	copied := map[string]bool{}
	for _, name := range backends {
		hostPath, err := h.find(name)
		if err != nil {
			return err
		}
		resolved, err := h.resolve(hostPath)
		if err != nil {
			return err
		}
		base := path.Base(resolved)
		if base == name {
			return fmt.Errorf("%s on this machine is not a link to a multi-call binary (xtables-nft-multi or xtables-legacy-multi); install Debian's iptables package (apt-get install iptables)", hostPath)
		}
		if !copied[resolved] {
			copied[resolved] = true
			data, mode, err := h.readFile(resolved)
			if err != nil {
				return err
			}
			xattrs := map[string]string{securityCapability: netAdminNetRawCapability}
			if err := l.addFileWithXattrs("/usr/sbin/"+base, mode, data, xattrs); err != nil {
				return err
			}
			dynamic = append(dynamic, resolved)
		}
		if err := l.addSymlink("/usr/sbin/"+name, base); err != nil {
			return err
		}
	}
	for _, name := range plain {
		family, op, _ := strings.Cut(name, "-")
		if op != "" {
			op = "-" + op
		}
		if err := l.addSymlink("/usr/sbin/"+name, family+defaultBackend+op); err != nil {
			return err
		}
	}

	modules, err := h.moduleDirs()
	if err != nil {
		return err
	}
	for _, dir := range modules {
		if err := h.copyPath(l, dir); err != nil {
			return err
		}
		names, err := os.ReadDir(h.real(dir))
		if err != nil {
			return fmt.Errorf("reading the xtables module directory: %w", err)
		}
		for _, n := range names {
			p := path.Join(dir, n.Name())
			if err := h.copyPath(l, p); err != nil {
				return err
			}
			if n.Type().IsRegular() && strings.HasSuffix(n.Name(), ".so") {
				dynamic = append(dynamic, p)
			}
		}
	}

	libs := map[string]bool{}
	for _, p := range dynamic {
		found, err := h.libs(h.real(p))
		if err != nil {
			return err
		}
		for _, lib := range found {
			libs[lib] = true
		}
	}
	sortedLibs := make([]string, 0, len(libs))
	for lib := range libs {
		sortedLibs = append(sortedLibs, lib)
	}
	sort.Strings(sortedLibs)
	for _, lib := range sortedLibs {
		if err := h.copyPath(l, lib); err != nil {
			return err
		}
	}

	for _, f := range etcFiles {
		if _, err := os.Lstat(h.real(f)); err != nil {
			continue
		}
		if err := h.copyPath(l, f); err != nil {
			return err
		}
	}
	// /run is world-writable (sticky, like /tmp) so that a non-root proxy-init can create the
	// xtables lock there; the legacy backend refuses to run without it.
	if err := l.addDir("/run", 0o1777); err != nil {
		return err
	}
	return l.addDir("/tmp", 0o1777)
}

// real returns where host path p is on this machine.
func (h host) real(p string) string { return filepath.Join(h.root, p) }

// find returns the host path of the iptables command name.
func (h host) find(name string) (string, error) {
	for _, dir := range sbinDirs {
		p := path.Join(dir, name)
		if _, err := os.Stat(h.real(p)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s on this machine: install Debian's iptables package (apt-get install iptables) to build mesh-proxy-init", name, strings.Join(sbinDirs, ", "))
}

// resolve follows every symlink of host path p (inside root) and returns the final path.
func (h host) resolve(p string) (string, error) {
	return h.walk(p, nil)
}

// copyPath adds host path p to l as it is on the host: every symlink met on the way
// (including directory links such as Debian's /lib -> usr/lib) becomes the same symlink in l,
// and the file or directory it ends at is copied (a directory without its content).
func (h host) copyPath(l *layer, p string) error {
	_, err := h.walk(p, l)
	return err
}

// walk resolves host path p component by component, following symlinks (relative to the
// directory they are in, absolute ones relative to root), and returns the resolved path.
// With a non-nil l it also records every symlink met and the final file or directory in l.
func (h host) walk(p string, l *layer) (string, error) {
	for hops := 0; hops < 40; hops++ {
		next, done, err := h.step(p, l)
		if err != nil || done {
			return next, err
		}
		p = next
	}
	return "", fmt.Errorf("too many symlinks resolving %s", p)
}

// step walks p until the first symlink; it returns the path with that symlink replaced by
// its target (done false), or p itself when p has no symlink (done true).
func (h host) step(p string, l *layer) (string, bool, error) {
	p = path.Clean(p)
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = path.Join(cur, part)
		fi, err := os.Lstat(h.real(cur))
		if err != nil {
			return "", false, fmt.Errorf("reading %s on this machine: %w", cur, err)
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(h.real(cur))
			if err != nil {
				return "", false, err
			}
			if l != nil {
				if err := l.addSymlink(cur, target); err != nil {
					return "", false, err
				}
			}
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(cur), target)
			}
			return path.Join(append([]string{target}, parts[i+1:]...)...), false, nil
		case fi.IsDir():
			if last && l != nil {
				if err := l.addDir(cur, int64(fi.Mode().Perm())); err != nil {
					return "", false, err
				}
			}
		case fi.Mode().IsRegular():
			if !last {
				return "", false, fmt.Errorf("%s on this machine is a file, not a directory", cur)
			}
			if l != nil {
				data, mode, err := h.readFile(cur)
				if err != nil {
					return "", false, err
				}
				if err := l.addFile(cur, mode, data); err != nil {
					return "", false, err
				}
			}
		default:
			return "", false, fmt.Errorf("%s on this machine is neither a file, a directory nor a symlink", cur)
		}
	}
	return p, true, nil
}

// readFile reads a regular host file and its permission bits.
func (h host) readFile(p string) ([]byte, int64, error) {
	fi, err := os.Stat(h.real(p))
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s on this machine: %w", p, err)
	}
	data, err := os.ReadFile(h.real(p))
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s on this machine: %w", p, err)
	}
	return data, int64(fi.Mode().Perm()), nil
}

// moduleDirs returns the host's xtables extension directories (/usr/lib/<triplet>/xtables on
// Debian, /usr/lib/xtables elsewhere), one per real directory.
func (h host) moduleDirs() ([]string, error) {
	var dirs []string
	seen := map[string]bool{}
	for _, pattern := range []string{"/usr/lib/*/xtables", "/usr/lib/xtables", "/usr/lib64/xtables", "/lib/*/xtables", "/lib/xtables"} {
		matches, _ := filepath.Glob(h.real(pattern))
		sort.Strings(matches)
		for _, m := range matches {
			rel := "/" + strings.TrimPrefix(strings.TrimPrefix(m, filepath.Clean(h.root)), "/")
			resolved, err := h.resolve(rel)
			if err != nil {
				return nil, err
			}
			if fi, err := os.Stat(h.real(resolved)); err != nil || !fi.IsDir() || seen[resolved] {
				continue
			}
			seen[resolved] = true
			dirs = append(dirs, rel)
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no xtables module directory found on this machine (looked for /usr/lib/*/xtables and /usr/lib/xtables): install Debian's iptables package (apt-get install iptables)")
	}
	return dirs, nil
}

// lddLibs runs ldd on file and returns the absolute paths of the libraries and loader it
// names. A static file has none.
func lddLibs(file string) ([]string, error) {
	if _, err := exec.LookPath("ldd"); err != nil {
		return nil, fmt.Errorf("ldd not found: install Debian's libc-bin package to build mesh-proxy-init")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ldd", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String() + stderr.String()
	if strings.Contains(out, "not a dynamic executable") || strings.Contains(out, "statically linked") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ldd %s failed: %w: %s", file, err, strings.TrimSpace(out))
	}
	return parseLdd(file, stdout.String())
}

// parseLdd reads ldd's output: "libx.so.1 => /lib/.../libx.so.1 (0x...)" and
// "/lib64/ld-linux-x86-64.so.2 (0x...)"; the kernel's vDSO has no file and is skipped.
func parseLdd(file, out string) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if name, rest, ok := strings.Cut(line, "=>"); ok {
			rest = strings.TrimSpace(rest)
			if strings.HasPrefix(rest, "not found") {
				return nil, fmt.Errorf("%s needs %s, which this machine does not have: install the package that provides it", file, strings.TrimSpace(name))
			}
			if f := strings.Fields(rest); len(f) > 0 && path.IsAbs(f[0]) {
				libs = append(libs, f[0])
			}
			continue
		}
		if f := strings.Fields(line); len(f) > 0 && path.IsAbs(f[0]) {
			libs = append(libs, f[0])
		}
	}
	return libs, sc.Err()
}
