//go:build integration

// Integration tests: real iptables (nft and legacy) in real network namespaces. They need
// root and skip loudly without it. Run them with
//
//	sudo go test -tags integration ./proxy-init/...
//
// Two namespaces stand for a pod and the rest of the network, linked by a veth pair:
//
//	pod  eth0 10.99.0.1/24 10.98.0.1/24 fd00:99::1/64 fd00:98::1/64
//	peer eth0 10.99.0.2/24 10.98.0.2/24 fd00:99::2/64 fd00:98::2/64
//
// In the pod, a helper process listens where the proxy would (outbound 127.0.0.1:4140 and
// [::1]:4140, inbound 0.0.0.0:4143 and [::]:4143) and where an application would (8080, 9090,
// 4191); the peer listens on 8080 and 9090. Each listener answers a connection with its name
// and, for the proxy's, the original destination read with internal/origdst. Clients run as
// helper processes too (as another user when the test needs it), so the test process never
// changes namespace or user.

package cmd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/origdst"
	"github.com/lightmesh/lightmesh/internal/testutil/golden"
	"github.com/lightmesh/lightmesh/internal/testutil/netns"
	"github.com/lightmesh/lightmesh/proxy-init/iptables"
)

// The test binary doubles as its helper processes; this variable selects the helper.
const (
	helperEnv     = "LM_PROXY_INIT_TEST_HELPER" // proxy-init, serve or dial
	injectRuleEnv = "LM_PROXY_INIT_TEST_INJECT_RULE"
	injectIntoEnv = "LM_PROXY_INIT_TEST_INJECT_INTO" // iptables or ip6tables
	dialUIDEnv    = "LM_PROXY_INIT_TEST_DIAL_UID"
	dialGIDEnv    = "LM_PROXY_INIT_TEST_DIAL_GID"
)

const (
	helperReadyTimeout = 15 * time.Second
	dialTimeout        = 5 * time.Second
	helperRunTimeout   = 60 * time.Second
)

// helperBinary is a copy of this test binary that any user may run (the one `go test` built
// sits in a folder only root can enter), set by TestMain when running as root.
var helperBinary string

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "proxy-init":
		os.Exit(helperProxyInit(os.Args[1:]))
	case "serve":
		os.Exit(helperServe(os.Args[1:]))
	case "dial":
		os.Exit(helperDial(os.Args[1:]))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
	os.Exit(func() int {
		if os.Geteuid() == 0 {
			dir, err := copyTestBinary()
			if err != nil {
				fmt.Fprintln(os.Stderr, "prepare the helper binary:", err)
				return 1
			}
			defer os.RemoveAll(dir)
		}
		return m.Run()
	}())
}

// copyTestBinary copies this binary into a new world-readable folder and sets helperBinary.
func copyTestBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "lm-proxy-init-it-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, err
	}
	content, err := os.ReadFile(self)
	if err != nil {
		return dir, err
	}
	helperBinary = filepath.Join(dir, "helper")
	return dir, os.WriteFile(helperBinary, content, 0o755)
}

// helperProxyInit runs mesh-proxy-init with args, optionally adding a bad rule to one
// family's restore input (after all the good ones), to fail it part-way.
func helperProxyInit(args []string) int {
	var runner iptables.Runner = iptables.ExecRunner{}
	if rule := os.Getenv(injectRuleEnv); rule != "" {
		runner = injectingRunner{next: runner, rule: rule, into: os.Getenv(injectIntoEnv) + "-"}
	}
	root := newRootCmd(runner)
	root.SetArgs(args)
	root.SilenceUsage = true
	root.SilenceErrors = true
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "mesh-proxy-init:", err)
		return 1
	}
	return 0
}

// injectingRunner adds rule at the end of the install input of the restore programs whose
// name starts with into.
type injectingRunner struct {
	next iptables.Runner
	rule string
	into string
}

func (r injectingRunner) Run(ctx context.Context, name string, args []string, stdin string) (string, error) {
	if strings.HasPrefix(name, r.into) && strings.HasSuffix(name, "-restore") && slices.Contains(args, "--noflush") {
		stdin = strings.Replace(stdin, "\nCOMMIT\n", "\n"+r.rule+"\nCOMMIT\n", 1)
	}
	return r.next.Run(ctx, name, args, stdin)
}

// helperServe listens on each "name=network/address" argument and answers every connection
// with a line: its name, and for "outbound" and "inbound" the original destination. It prints
// "ready" once listening and exits when its stdin closes.
func helperServe(args []string) int {
	for _, arg := range args {
		name, spec, _ := strings.Cut(arg, "=")
		network, address, _ := strings.Cut(spec, "/")
		ln, err := net.Listen(network, address)
		if err != nil {
			fmt.Fprintf(os.Stderr, "listen %s %s: %v\n", network, address, err)
			return 1
		}
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go answer(conn.(*net.TCPConn), name)
			}
		}()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes stdin
	return 0
}

func answer(conn *net.TCPConn, name string) {
	defer conn.Close()
	reply := name
	if name == "outbound" || name == "inbound" {
		dst, err := origdst.Get(conn)
		if err != nil {
			reply += " error: " + err.Error()
		} else {
			reply += " " + dst.String()
		}
	}
	_ = conn.SetWriteDeadline(time.Now().Add(dialTimeout))
	fmt.Fprintln(conn, reply)
}

// helperDial dials args[0] (from the local address args[1], if given), prints the line the
// server answers, and exits. With dialUIDEnv set it first re-executes itself as that user
// (and dialGIDEnv's group, or the same number), with no supplementary groups.
func helperDial(args []string) int {
	if uidText := os.Getenv(dialUIDEnv); uidText != "" {
		uid, _ := strconv.ParseUint(uidText, 10, 32)
		gid := uid
		if gidText := os.Getenv(dialGIDEnv); gidText != "" {
			gid, _ = strconv.ParseUint(gidText, 10, 32)
		}
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*dialTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Env = slices.DeleteFunc(os.Environ(), func(v string) bool {
			return strings.HasPrefix(v, dialUIDEnv+"=") || strings.HasPrefix(v, dialGIDEnv+"=")
		})
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "dial as %d:%d: %v\n", uid, gid, err)
			return 1
		}
		return 0
	}
	dialer := net.Dialer{Timeout: dialTimeout}
	if len(args) > 1 {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(args[1])}
	}
	conn, err := dialer.Dial("tcp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "read the answer:", err)
		return 1
	}
	fmt.Print(line)
	return 0
}

// env is a pod namespace and a peer namespace, linked, with listeners in both.
type env struct {
	mode      string // nft or legacy
	pod, peer *netns.Namespace
	ipv6      bool
}

func newEnv(t *testing.T, mode string) *env {
	t.Helper()
	netns.Require(t, "iptables-"+mode+"-save", "iptables-"+mode+"-restore", "ip6tables-"+mode+"-save", "ip6tables-"+mode+"-restore")
	if helperBinary == "" {
		t.Fatal("the helper binary was not prepared (TestMain copies it when running as root)")
	}
	e := &env{mode: mode, pod: netns.New(t, "pod"), peer: netns.New(t, "peer"), ipv6: netns.IPv6Available()}
	netns.Connect(t, e.pod, e.peer, "eth0")
	for _, host := range []struct {
		ns   *netns.Namespace
		last string
	}{{e.pod, "1"}, {e.peer, "2"}} {
		host.ns.AddAddress(t, "eth0", "10.99.0."+host.last+"/24")
		host.ns.AddAddress(t, "eth0", "10.98.0."+host.last+"/24")
		if e.ipv6 {
			host.ns.AddAddress(t, "eth0", "fd00:99::"+host.last+"/64")
			host.ns.AddAddress(t, "eth0", "fd00:98::"+host.last+"/64")
		}
	}
	// Someone else's rules in the nat table: we must leave them alone, and they tell
	// --iptables-mode auto which backend this namespace uses.
	e.pod.Run(t, "iptables-"+mode, "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "9999", "-j", "RETURN")
	e.pod.Run(t, "ip6tables-"+mode, "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "9999", "-j", "RETURN")

	podListeners := []string{"outbound=tcp4/127.0.0.1:4140", "inbound=tcp4/0.0.0.0:4143",
		"app=tcp4/0.0.0.0:8080", "app=tcp4/0.0.0.0:9090", "app=tcp4/0.0.0.0:4191"}
	peerListeners := []string{"peer=tcp4/0.0.0.0:8080", "peer=tcp4/0.0.0.0:9090"}
	if e.ipv6 {
		podListeners = append(podListeners, "outbound=tcp6/[::1]:4140", "inbound=tcp6/[::]:4143",
			"app=tcp6/[::]:8080", "app=tcp6/[::]:9090", "app=tcp6/[::]:4191")
		peerListeners = append(peerListeners, "peer=tcp6/[::]:8080", "peer=tcp6/[::]:9090")
	}
	startServer(t, e.pod, podListeners)
	startServer(t, e.peer, peerListeners)
	return e
}

// startServer starts the serve helper in ns, waits (bounded) until it listens, and stops it
// when the test ends.
func startServer(t *testing.T, ns *netns.Namespace, listeners []string) {
	t.Helper()
	cmd := ns.Command(context.Background(), helperBinary, listeners...)
	cmd.Env = append(os.Environ(), helperEnv+"=serve")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the listeners in %s: %v", ns, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("printed %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("listeners in %s did not start: %v: %s", ns, err, stderr.String())
		}
	case <-time.After(helperReadyTimeout):
		t.Fatalf("listeners in %s not ready after %s", ns, helperReadyTimeout)
	}
}

// proxyInit runs mesh-proxy-init in the pod with args, returning its stderr and error.
func (e *env) proxyInit(t *testing.T, extraEnv []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), helperRunTimeout)
	defer cancel()
	cmd := e.pod.Command(ctx, helperBinary, args...)
	cmd.Env = append(append(os.Environ(), helperEnv+"=proxy-init"), extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stderr.String(), err
}

// mustProxyInit runs mesh-proxy-init with --iptables-mode and --ipv6 (when available) added.
func (e *env) mustProxyInit(t *testing.T, args ...string) string {
	t.Helper()
	stderr, err := e.proxyInit(t, nil, e.args(args...)...)
	if err != nil {
		t.Fatalf("mesh-proxy-init %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return stderr
}

func (e *env) args(args ...string) []string {
	if !slices.Contains(args, "--iptables-mode") {
		args = append(args, "--iptables-mode", e.mode)
	}
	if e.ipv6 {
		args = append(args, "--ipv6")
	}
	return args
}

// natTables returns the pod's IPv4 and IPv6 nat tables, without comment lines (dates) and
// counters.
func (e *env) natTables(t *testing.T) string {
	t.Helper()
	tables := e.pod.Run(t, "iptables-"+e.mode+"-save", "-t", "nat") + e.pod.Run(t, "ip6tables-"+e.mode+"-save", "-t", "nat")
	var kept []string
	for _, line := range strings.Split(tables, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			kept = append(kept, counters.ReplaceAllString(line, "[0:0]"))
		}
	}
	return strings.Join(kept, "\n") + "\n"
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// probe is one connection and where it must land.
type probe struct {
	name     string
	fromPeer bool   // dial from the peer namespace, else from the pod
	address  string // where to dial
	local    string // source address, if not the default
	uid, gid string // user and group to dial as, if not root
	want     string // the answer: the listener's name and, for the proxy's, the original destination
}

func (p probe) ipv6() bool { return strings.HasPrefix(p.address, "[") }

func (e *env) check(t *testing.T, probes []probe) {
	t.Helper()
	for _, p := range probes {
		if p.ipv6() && !e.ipv6 {
			continue
		}
		from := e.pod
		if p.fromPeer {
			from = e.peer
		}
		args := []string{p.address}
		if p.local != "" {
			args = append(args, p.local)
		}
		ctx, cancel := context.WithTimeout(context.Background(), helperRunTimeout)
		cmd := from.Command(ctx, helperBinary, args...)
		cmd.Env = append(os.Environ(), helperEnv+"=dial")
		if p.uid != "" {
			cmd.Env = append(cmd.Env, dialUIDEnv+"="+p.uid, dialGIDEnv+"="+p.gid)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		got := strings.TrimSpace(string(out))
		if err != nil {
			got = "dial failed: " + strings.TrimSpace(stderr.String())
		}
		if got != p.want {
			t.Errorf("%s: dial %s from %s: got %q, want %q", p.name, p.address, from, got, p.want)
		}
	}
}

var modes = []string{"nft", "legacy"}

func TestInterception(t *testing.T) {
	for _, mode := range modes {
		for _, tc := range []struct {
			name   string
			args   []string
			probes []probe
		}{
			{
				name: "defaults",
				args: []string{"--iptables-mode", "auto"},
				probes: []probe{
					{name: "outbound goes to the proxy", address: "10.99.0.2:8080", want: "outbound 10.99.0.2:8080"},
					{name: "outbound IPv6 goes to the proxy", address: "[fd00:99::2]:8080", want: "outbound [fd00:99::2]:8080"},
					{name: "the proxy's own connection goes out", address: "10.99.0.2:8080", uid: "2102", gid: "2102", want: "peer"},
					{name: "the proxy's own IPv6 connection goes out", address: "[fd00:99::2]:8080", uid: "2102", gid: "2102", want: "peer"},
					{name: "another user is intercepted", address: "10.99.0.2:8080", uid: "3000", gid: "3000", want: "outbound 10.99.0.2:8080"},
					{name: "loopback is left alone", address: "127.0.0.1:8080", want: "app"},
					{name: "IPv6 loopback is left alone", address: "[::1]:8080", want: "app"},
					{name: "inbound goes to the proxy", fromPeer: true, address: "10.99.0.1:8080", want: "inbound 10.99.0.1:8080"},
					{name: "inbound IPv6 goes to the proxy", fromPeer: true, address: "[fd00:99::1]:8080", want: "inbound [fd00:99::1]:8080"},
					{name: "the admin port is not redirected", fromPeer: true, address: "10.99.0.1:4191", want: "app"},
				},
			},
			{
				name: "ignored ports and subnets",
				args: []string{"--outbound-ports-to-ignore", "9090", "--inbound-ports-to-ignore", "4190,4191,9090",
					"--subnets-to-ignore", "10.98.0.0/24,fd00:98::/64"},
				probes: []probe{
					{name: "an ignored outbound port goes out", address: "10.99.0.2:9090", want: "peer"},
					{name: "other outbound ports go to the proxy", address: "10.99.0.2:8080", want: "outbound 10.99.0.2:8080"},
					{name: "an ignored subnet is reached directly", address: "10.98.0.2:8080", want: "peer"},
					{name: "an ignored IPv6 subnet is reached directly", address: "[fd00:98::2]:8080", want: "peer"},
					{name: "an ignored inbound port reaches the app", fromPeer: true, address: "10.99.0.1:9090", want: "app"},
					{name: "inbound from an ignored subnet reaches the app", fromPeer: true, address: "10.98.0.1:8080", local: "10.98.0.2", want: "app"},
					{name: "inbound from another subnet goes to the proxy", fromPeer: true, address: "10.98.0.1:8080", local: "10.99.0.2", want: "inbound 10.98.0.1:8080"},
					{name: "IPv6 inbound from an ignored subnet reaches the app", fromPeer: true, address: "[fd00:98::1]:8080", local: "fd00:98::2", want: "app"},
				},
			},
			{
				name: "ports to redirect",
				args: []string{"--ports-to-redirect", "9090"},
				probes: []probe{
					{name: "a listed port goes to the proxy", fromPeer: true, address: "10.99.0.1:9090", want: "inbound 10.99.0.1:9090"},
					{name: "a listed IPv6 port goes to the proxy", fromPeer: true, address: "[fd00:99::1]:9090", want: "inbound [fd00:99::1]:9090"},
					{name: "other ports reach the app", fromPeer: true, address: "10.99.0.1:8080", want: "app"},
					{name: "outbound is unchanged", address: "10.99.0.2:8080", want: "outbound 10.99.0.2:8080"},
				},
			},
			{
				name: "proxy group",
				args: []string{"--proxy-gid", "2103"},
				probes: []probe{
					{name: "the proxy's group goes out", address: "10.99.0.2:8080", uid: "3000", gid: "2103", want: "peer"},
					{name: "another group is intercepted", address: "10.99.0.2:8080", uid: "3000", gid: "3000", want: "outbound 10.99.0.2:8080"},
				},
			},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t, mode)
				stderr := e.mustProxyInit(t, tc.args...)
				if slices.Contains(tc.args, "auto") && !strings.Contains(stderr, "mode="+mode) {
					t.Errorf("--iptables-mode auto did not detect %s:\n%s", mode, stderr)
				}
				e.check(t, tc.probes)
			})
		}
	}
}

func TestSecondRunAndCleanup(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, mode)
			before := e.natTables(t)
			e.mustProxyInit(t)
			first := e.natTables(t)
			if first == before {
				t.Fatalf("mesh-proxy-init changed nothing:\n%s", first)
			}
			e.mustProxyInit(t)
			if second := e.natTables(t); second != first {
				t.Errorf("a second run changed the rules (-first +second):\n%s", golden.Diff("first", "second", first, second))
			}
			e.check(t, []probe{{name: "after two runs", address: "10.99.0.2:8080", want: "outbound 10.99.0.2:8080"}})

			e.mustProxyInit(t, "--cleanup")
			if after := e.natTables(t); after != before {
				t.Errorf("--cleanup did not restore the nat table (-before +after):\n%s", golden.Diff("before", "after", before, after))
			}
			e.check(t, []probe{{name: "after cleanup", address: "10.99.0.2:8080", want: "peer"}})

			stderr := e.mustProxyInit(t, "--cleanup")
			if !strings.Contains(stderr, "nothing to clean up") {
				t.Errorf("a second --cleanup said:\n%s", stderr)
			}
		})
	}
}

func TestFailedRunLeavesNothing(t *testing.T) {
	const badRule = "-A " + iptables.OutputChain + " -p tcp -j LM_NO_SUCH_CHAIN"
	for _, mode := range modes {
		for _, family := range []string{"iptables", "ip6tables"} {
			t.Run(mode+"/"+family, func(t *testing.T) {
				e := newEnv(t, mode)
				if family == "ip6tables" && !e.ipv6 {
					t.Skip("no IPv6 in this kernel")
				}
				before := e.natTables(t)
				stderr, err := e.proxyInit(t, []string{injectRuleEnv + "=" + badRule, injectIntoEnv + "=" + family}, e.args()...)
				if err == nil {
					t.Fatalf("mesh-proxy-init succeeded with a bad rule in the %s input:\n%s", family, stderr)
				}
				if after := e.natTables(t); after != before {
					t.Errorf("a failed run left rules behind (-before +after):\n%s\nits output:\n%s", golden.Diff("before", "after", before, after), stderr)
				}
				e.check(t, []probe{{name: "after the failed run", address: "10.99.0.2:8080", want: "peer"}})
			})
		}
	}
}
