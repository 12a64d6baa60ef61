//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

const destinationEchoManifest = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 2
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: echo
          image: %[1]s
          imagePullPolicy: Never
          args: [serve, --addr, ":8080"]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /ready, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector: {app: echo}
  ports: [{name: web, port: 80, targetPort: http}]
`

// startDestination runs `mesh-controller destination` as a local process against the cluster
// and waits until its caches are filled; it is stopped by PID when the test ends.
func startDestination(t *testing.T, bin string, args ...string) (addr string) {
	t.Helper()
	logs := &lockedBuffer{}
	all := append([]string{"destination", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(bin, all...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the destination service (pid %d) exited with %v after SIGTERM", cmd.Process.Pid, err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("the destination service, killed: %v", <-exited)
			t.Errorf("the destination service (pid %d) did not stop within 15s of SIGTERM; killed it", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("destination service logs:\n%s", logs.String())
		}
	})
	grpcRe := regexp.MustCompile(`msg="destination service listening" .*?addr=(\S+)`)
	adminRe := regexp.MustCompile(`msg="admin server listening" .*?addr=(\S+)`)
	adminAddr := ""
	eventually(t, 90*time.Second, "the destination service to listen", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the destination service exited early: %v\nlogs:\n%s", err, logs.String())
		default:
		}
		if m := grpcRe.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		if m := adminRe.FindStringSubmatch(logs.String()); m != nil {
			adminAddr = m[1]
		}
		return addr != "" && adminAddr != "", "logs: " + logs.String()
	})
	eventually(t, 30*time.Second, "the destination service's /ready", func() (bool, string) {
		resp, err := http.Get("http://" + adminAddr + "/ready")
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return addr
}

// endpointWatch follows one Get stream and keeps the endpoint set it describes.
type endpointWatch struct {
	updates chan *destinationv1.Update
	errs    chan error
	set     map[string]*destinationv1.WeightedAddr
	exists  bool
	kinds   []string
}

func watchEndpoints(t *testing.T, ctx context.Context, client destinationv1.DestinationClient, path string) *endpointWatch {
	t.Helper()
	stream, err := client.Get(ctx, &destinationv1.GetDestination{Path: path})
	if err != nil {
		t.Fatalf("Get %s: %v", path, err)
	}
	w := &endpointWatch{updates: make(chan *destinationv1.Update, 64), errs: make(chan error, 1), set: map[string]*destinationv1.WeightedAddr{}}
	go func() {
		for {
			u, err := stream.Recv()
			if err != nil {
				w.errs <- err
				return
			}
			w.updates <- u
		}
	}()
	return w
}

func addrString(a *destinationv1.TcpAddress) string {
	return netip.AddrPortFrom(netip.MustParseAddr(a.GetIp()), uint16(a.GetPort())).String()
}

// until applies updates until check passes, failing after timeout.
func (w *endpointWatch) until(t *testing.T, timeout time.Duration, what string, check func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	for !check() {
		select {
		case u := <-w.updates:
			switch u := u.Update.(type) {
			case *destinationv1.Update_Add:
				w.kinds = append(w.kinds, fmt.Sprintf("add%d", len(u.Add.GetAddrs())))
				w.exists = true
				for _, wa := range u.Add.GetAddrs() {
					w.set[addrString(wa.GetAddr())] = wa
				}
			case *destinationv1.Update_Remove:
				w.kinds = append(w.kinds, fmt.Sprintf("remove%d", len(u.Remove.GetAddrs())))
				for _, a := range u.Remove.GetAddrs() {
					delete(w.set, addrString(a))
				}
			case *destinationv1.Update_NoEndpoints:
				w.kinds = append(w.kinds, "none")
				w.exists = u.NoEndpoints.GetExists()
				clear(w.set)
			}
		case err := <-w.errs:
			t.Fatalf("%s: the stream ended: %v (updates so far: %v)", what, err, w.kinds)
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; updates: %v, set: %v", timeout, what, w.kinds, w.addrs())
		}
	}
}

func (w *endpointWatch) addrs() []string {
	var out []string
	for k := range w.set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestDestinationService(t *testing.T) {
	c := localCluster(t)
	bin := buildController(t)
	ns := c.namespace(t, "e2e-destination")

	anchor, err := meshid.GenerateTrustAnchor(meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := meshid.GenerateIssuer(anchor, meshid.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	anchorsFile := filepath.Join(dir, "trust-anchors.pem")
	if err := os.WriteFile(anchorsFile, anchor.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	issuers := newIssuerDir(t, filepath.Join(dir, "issuer"), issuer)
	addr := startDestination(t, bin, "--kubeconfig", c.kubeconfig, "--issuer-dir", issuers.dir,
		"--trust-anchors-file", anchorsFile)

	// The proxy's side: a workload certificate signed by the issuer.
	key, err := meshid.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id := meshid.SpiffeID{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: "default"}
	csrDER, err := meshid.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := issuer.Sign(csr, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor.Certificate)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "destination.lightmesh.svc.cluster.local",
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, issuer.Certificate.Raw}, PrivateKey: key, Leaf: leaf}},
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := destinationv1.NewDestinationClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	authority := fmt.Sprintf("echo.%s.svc.cluster.local:80", ns)
	unknown := watchEndpoints(t, ctx, client, fmt.Sprintf("nothing.%s.svc.cluster.local:80", ns))
	unknown.until(t, 30*time.Second, "NoEndpoints{exists: false} for an unknown service", func() bool {
		return slices.Contains(unknown.kinds, "none") && !unknown.exists
	})

	c.apply(t, ns, fmt.Sprintf(destinationEchoManifest, testImage("e2e-echo")))
	if _, err := c.run(t, 3*time.Minute, "-n", ns, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("echo deployment did not roll out: %v\n%s", err, c.describe(t, ns))
	}
	w := watchEndpoints(t, ctx, client, authority)
	w.until(t, 60*time.Second, "2 endpoints", func() bool { return len(w.set) == 2 })
	if w.kinds[0] != "add2" {
		t.Errorf("the first update was %s, want the full set (add2)", w.kinds[0])
	}
	for a, wa := range w.set {
		if !strings.HasSuffix(a, ":8080") {
			t.Errorf("endpoint %s: want the named target port http (8080)", a)
		}
		if wa.GetTlsIdentity() != "" {
			t.Errorf("endpoint %s of an uninjected pod has identity %q", a, wa.GetTlsIdentity())
		}
		if l := wa.GetMetricLabels(); l["owner_kind"] != "Deployment" || l["owner_name"] != "echo" || l["namespace"] != ns || l["pod"] == "" {
			t.Errorf("endpoint %s labels: %v", a, l)
		}
	}

	clusterIP := strings.TrimSpace(c.must(t, "-n", ns, "get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}"))
	byIP := watchEndpoints(t, ctx, client, net.JoinHostPort(clusterIP, "80"))
	byIP.until(t, 30*time.Second, "the same 2 endpoints by ClusterIP", func() bool { return slices.Equal(byIP.addrs(), w.addrs()) })

	c.must(t, "-n", ns, "scale", "deployment/echo", "--replicas=3")
	w.until(t, 3*time.Minute, "an Add of the third replica", func() bool { return len(w.set) == 3 })
	if last := w.kinds[len(w.kinds)-1]; last != "add1" {
		t.Errorf("scaling to 3 sent %s, want add1 (updates: %v)", last, w.kinds)
	}

	c.must(t, "-n", ns, "scale", "deployment/echo", "--replicas=0")
	w.until(t, 3*time.Minute, "the endpoints removed", func() bool { return len(w.set) == 0 && slices.Contains(w.kinds, "none") })
	if !slices.ContainsFunc(w.kinds, func(k string) bool { return strings.HasPrefix(k, "remove") }) {
		t.Errorf("scaling to 0 sent no Remove: %v", w.kinds)
	}
	if !w.exists {
		t.Errorf("after scaling to 0 the service must still exist (NoEndpoints{exists: true})")
	}
}
