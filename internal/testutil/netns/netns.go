// Package netns makes throwaway network namespaces for integration tests that need root:
// named namespaces (`ip netns`), veth links between them, addresses, and commands run inside
// them. Everything a test makes is deleted in t.Cleanup.
//
// Code runs inside a namespace as a separate process (`ip netns exec`), so a test never
// moves its own threads between namespaces.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// commandTimeout bounds every setup command.
const commandTimeout = 30 * time.Second

// Require skips t, loudly, unless it runs as root and every program is on PATH (`ip` is
// always required).
func Require(t testing.TB, programs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("SKIPPED (NOT ROOT): %s needs root to make network namespaces; run it as root, e.g. sudo go test -tags integration ./...", t.Name())
	}
	for _, program := range append([]string{"ip"}, programs...) {
		if _, err := exec.LookPath(program); err != nil {
			t.Skipf("SKIPPED (MISSING %s): %s needs it on PATH; install it (Debian: ip is in iproute2, iptables-* in iptables)", program, t.Name())
		}
	}
}

// IPv6Available reports whether the kernel has IPv6.
func IPv6Available() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// Namespace is a named network namespace made for one test.
type Namespace struct {
	Name string
}

// New creates a namespace named lm-test-<random>-<role>, with loopback up and IPv6 duplicate
// address detection off (addresses are usable at once), and deletes it when the test ends.
func New(t testing.TB, role string) *Namespace {
	t.Helper()
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	ns := &Namespace{Name: "lm-test-" + hex.EncodeToString(suffix) + "-" + role}
	run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", "netns", "delete", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("delete network namespace %s: %v: %s", ns.Name, err, out)
		}
	})
	ns.Run(t, "ip", "link", "set", "lo", "up")
	if IPv6Available() {
		ns.Run(t, "sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad")
	}
	return ns
}

// Command returns a command running name with args inside ns. The process ns starts is the
// program itself (`ip netns exec` execs it), so killing cmd.Process kills the program.
func (ns *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs name with args inside ns, fails the test if it fails, and returns its stdout.
func (ns *Namespace) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// AddAddress assigns cidr (such as 10.0.0.1/24 or fd00::1/64) to the interface.
func (ns *Namespace) AddAddress(t testing.TB, iface, cidr string) {
	t.Helper()
	args := []string{"-n", ns.Name, "address", "add", cidr, "dev", iface}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	run(t, "ip", args...)
}

// Connect links a and b with a veth pair whose ends are called iface in both, and sets both
// ends up. Deleting either namespace deletes the pair.
func Connect(t testing.TB, a, b *Namespace, iface string) {
	t.Helper()
	run(t, "ip", "-n", a.Name, "link", "add", iface, "type", "veth", "peer", "name", iface, "netns", b.Name)
	run(t, "ip", "-n", a.Name, "link", "set", iface, "up")
	run(t, "ip", "-n", b.Name, "link", "set", iface, "up")
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out)
}

// String returns the namespace's name.
func (ns *Namespace) String() string { return fmt.Sprintf("netns %s", ns.Name) }
