//go:build integration

// Integration test: real mesh-proxy and mesh-proxy-init processes in two network namespaces
// linked by a veth pair, with mTLS between the proxies. It needs root and skips loudly
// without it:
//
//	sudo go test -tags integration ./proxy/cmd/
//
//	client ns 10.77.0.1: proxy-init rules, mesh-proxy (UID 2102), a client helper
//	server ns 10.77.0.2: proxy-init rules, mesh-proxy (UID 2102), an HTTP app on 8080 and a
//	                     server-speaks-first TCP app on 5432 (an opaque port by default)
package cmd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/testutil/netns"
	"github.com/lightmesh/lightmesh/proxy/internal/testpki"
)

const (
	helperEnv = "LM_PROXY_IT_HELPER"
	clientID  = "spiffe://cluster.local/ns/it/sa/client"
	serverID  = "spiffe://cluster.local/ns/it/sa/server"
	clientIP  = "10.77.0.1"
	serverIP  = "10.77.0.2"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "app":
		os.Exit(helperApp())
	case "get":
		os.Exit(helperGet(os.Args[1]))
	case "tcp":
		os.Exit(helperTCP(os.Args[1]))
	default:
		fmt.Fprintln(os.Stderr, "unknown helper")
		os.Exit(2)
	}
}

// helperApp serves HTTP on 8080 (answering with the client identity it was given) and a
// server-speaks-first protocol on 5432, until stdin closes.
func helperApp() int {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		// Serve returns only when the listener fails; say so, or the test sees only refusals.
		err := http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello %s from %s", r.Header.Get("Lightmesh-Client-Id"), r.RemoteAddr)
		}))
		fmt.Fprintln(os.Stderr, "http app:", err)
	}()
	tl, err := net.Listen("tcp", ":5432")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprint(c, "220 ready\n")
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "250 %s", line)
			}()
		}
	}()
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func helperGet(url string) int {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	return 0
}

func helperTCP(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	banner, err := br.ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "banner:", err)
		return 1
	}
	fmt.Fprint(c, "HELO mesh\n")
	reply, _ := br.ReadString('\n')
	fmt.Print(banner + reply)
	return 0
}

// pod is one namespace with proxy-init rules and a running mesh-proxy.
type pod struct {
	ns    *netns.Namespace
	proxy *exec.Cmd
	logs  *bytes.Buffer
}

func TestMeshBetweenNamespaces(t *testing.T) {
	netns.Require(t, "iptables-nft-restore", "ip6tables-nft-restore", "setpriv")
	bin := buildBinaries(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pki := testpki.New(t)

	client := &pod{ns: netns.New(t, "client")}
	server := &pod{ns: netns.New(t, "server")}
	netns.Connect(t, client.ns, server.ns, "eth0")
	client.ns.AddAddress(t, "eth0", clientIP+"/24")
	server.ns.AddAddress(t, "eth0", serverIP+"/24")

	startHelper(t, server.ns, self, "app")
	for _, p := range []struct {
		pod *pod
		id  string
		ip  string
		env []string
	}{
		{server, serverID, serverIP, nil},
		{client, clientID, clientIP, []string{"MESH_PROXY_STATIC_DESTINATIONS=" + serverIP + ":8080=" + serverIP + ":8080@" + serverID + "," + serverIP + ":5432=" + serverIP + ":5432@" + serverID}},
	} {
		dir := filepath.Join(bin, "identity-"+p.ip)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		pki.WriteFiles(t, dir, pki.Leaf(t, p.id))
		p.pod.ns.Run(t, filepath.Join(bin, "mesh-proxy-init"), "--iptables-mode", "nft")
		p.pod.startProxy(t, bin, append([]string{"MESH_PROXY_IDENTITY_DIR=" + dir, "MESH_PROXY_POD_IP=" + p.ip}, p.env...))
	}
	for _, p := range []*pod{server, client} {
		p.waitReady(t, self)
	}

	t.Run("HTTP/1.1 over mTLS", func(t *testing.T) {
		out := helper(t, client.ns, self, "get", "http://"+serverIP+":8080/hello")
		// The app sees the verified client identity, and a connection from its own pod IP
		// (its proxy), never from localhost.
		if !strings.HasPrefix(out, "200 hello "+clientID+" from "+serverIP+":") {
			t.Errorf("got %q (client proxy logs:\n%s\nserver proxy logs:\n%s)", out, client.logs, server.logs)
		}
	})
	t.Run("opaque server-speaks-first over mTLS", func(t *testing.T) {
		out := helper(t, client.ns, self, "tcp", serverIP+":5432")
		if out != "220 ready\n250 HELO mesh\n" {
			t.Errorf("got %q (client proxy logs:\n%s\nserver proxy logs:\n%s)", out, client.logs, server.logs)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		metrics := helper(t, server.ns, self, "get", "http://127.0.0.1:4191/metrics")
		for _, want := range []string{
			`request_total{authority="` + serverIP + `:8080",client_id="` + clientID + `",direction="inbound",server_id="",tls="true"} 1`,
			`tcp_open_total{authority="` + serverIP + `:5432",client_id="` + clientID + `",direction="inbound",peer="src",server_id="",tls="true"} 1`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("server metrics lack %s:\n%s", want, metrics)
			}
		}
	})
	t.Run("runtime: one worker, polling scheduler", func(t *testing.T) {
		metrics := helper(t, server.ns, self, "get", "http://127.0.0.1:4191/metrics")
		if !strings.Contains(metrics, "\ngo_sched_gomaxprocs_threads 1\n") {
			t.Errorf("the sidecar does not run one worker (GOMAXPROCS 1):\n%s", metrics)
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", server.proxy.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(environ, []byte("\x00GODEBUG="+pollingSchedtrace+"\x00")) {
			t.Errorf("the proxy did not re-execute itself with GODEBUG=%s; environment: %q", pollingSchedtrace, environ)
		}
		// Re-executed by its path, the process keeps its name for ps and top.
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", server.proxy.Process.Pid)); err != nil || string(comm) != "mesh-proxy\n" {
			t.Errorf("the re-executed proxy is named %q (%v), want mesh-proxy", comm, err)
		}
	})
	t.Run("SIGTERM stops the proxies", func(t *testing.T) {
		for _, p := range []*pod{client, server} {
			if err := p.proxy.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- p.proxy.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("mesh-proxy exited with %v:\n%s", err, p.logs)
				}
				p.proxy = nil
			case <-time.After(30 * time.Second):
				t.Errorf("mesh-proxy did not stop within 30 s of SIGTERM")
			}
		}
	})
}

// buildBinaries builds mesh-proxy and mesh-proxy-init into a folder every user can read.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lm-proxy-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, pkg := range map[string]string{"mesh-proxy": "../", "mesh-proxy-init": "../../proxy-init"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return dir
}

func (p *pod) startProxy(t *testing.T, bin string, env []string) {
	t.Helper()
	p.logs = &bytes.Buffer{}
	cmd := p.ns.Command(context.Background(), "setpriv", "--reuid", "2102", "--regid", "2102", "--clear-groups", filepath.Join(bin, "mesh-proxy"))
	cmd.Env = append(append(os.Environ(), "MESH_PROXY_LOG_FORMAT=text", "MESH_PROXY_LOG_LEVEL=debug", "MESH_PROXY_SHUTDOWN_GRACE=5s"), env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.proxy = cmd
	t.Cleanup(func() {
		if p.proxy != nil {
			_ = p.proxy.Process.Kill()
			_ = p.proxy.Wait()
		}
	})
}

func (p *pod) waitReady(t *testing.T, self string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := tryHelper(p.ns, self, "get", "http://127.0.0.1:4191/ready")
		if strings.HasPrefix(out, "200") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mesh-proxy in %s not ready after 30 s: %q\n%s", p.ns, out, p.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startHelper(t *testing.T, ns *netns.Namespace, self, mode string) {
	t.Helper()
	cmd := ns.Command(context.Background(), self)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			t.Fatalf("helper %s did not start: %q %s", mode, line, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("helper %s not ready after 15 s", mode)
	}
}

func tryHelper(ns *netns.Namespace, self, mode, arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := ns.Command(ctx, self, arg)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}

func helper(t *testing.T, ns *netns.Namespace, self, mode, arg string) string {
	t.Helper()
	out, err := tryHelper(ns, self, mode, arg)
	if err != nil {
		t.Errorf("helper %s %s in %s: %v", mode, arg, ns, err)
	}
	return out
}
