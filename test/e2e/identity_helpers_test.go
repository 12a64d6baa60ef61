//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	identityv1 "github.com/lightmesh/lightmesh/controller/api/identity/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
)

const identityAudience = "identity.lightmesh.io"

// buildController builds ./controller into a temporary directory and returns the binary.
func buildController(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mesh-controller")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/lightmesh/lightmesh/controller")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./controller: %v\n%s", err, out)
	}
	return bin
}

// lockedBuffer collects a process's output; safe to read while the process writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// identityProcess is `mesh-controller identity` running as a local process.
type identityProcess struct {
	cmd       *exec.Cmd
	logs      *lockedBuffer
	addr      string
	adminAddr string
}

// startIdentity runs bin with `identity` and args (plus listen addresses on loopback ports of
// its choosing) and env, waits until it is ready, and stops it by PID when the test ends.
func startIdentity(t *testing.T, bin string, env []string, args ...string) *identityProcess {
	t.Helper()
	p := &identityProcess{logs: &lockedBuffer{}}
	all := append([]string{"identity", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)
	p.cmd = exec.Command(bin, all...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the identity service (pid %d) exited with %v after SIGTERM\nlogs:\n%s", p.cmd.Process.Pid, err, p.logs.String())
			}
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Logf("the identity service, killed: %v", <-exited)
			t.Errorf("the identity service (pid %d) did not stop within 15s of SIGTERM; killed it", p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("identity service logs:\n%s", p.logs.String())
		}
	})

	grpcRe := regexp.MustCompile(`msg="identity service listening" .*?addr=(\S+)`)
	adminRe := regexp.MustCompile(`msg="admin server listening" .*?addr=(\S+)`)
	eventually(t, 30*time.Second, "the identity service to listen", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the identity service exited early: %v\nlogs:\n%s", err, p.logs.String())
		default:
		}
		logs := p.logs.String()
		if m := grpcRe.FindStringSubmatch(logs); m != nil {
			p.addr = m[1]
		}
		if m := adminRe.FindStringSubmatch(logs); m != nil {
			p.adminAddr = m[1]
		}
		return p.addr != "" && p.adminAddr != "", "logs: " + logs
	})
	eventually(t, 30*time.Second, "the identity service's /ready", func() (bool, string) {
		code, body := p.admin(t, "/ready")
		return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
	})
	return p
}

// admin GETs path from the admin server.
func (p *identityProcess) admin(t *testing.T, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + p.adminAddr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// dial returns an Identity client that verifies the service with anchor and the default
// serving name.
func (p *identityProcess) dial(t *testing.T, anchor *x509.Certificate) identityv1.IdentityClient {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(anchor)
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: "identity.lightmesh.svc.cluster.local", MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return identityv1.NewIdentityClient(conn)
}

// certify asks for a certificate for id with token and a fresh key; it returns the leaf and
// the chain the service sent.
func certify(ctx context.Context, client identityv1.IdentityClient, id meshid.SpiffeID, token string) ([]*x509.Certificate, error) {
	key, err := meshid.GenerateKey()
	if err != nil {
		return nil, err
	}
	csr, err := meshid.NewCSR(key, id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := client.Certify(ctx, &identityv1.CertifyRequest{Identity: id.String(), Token: []byte(token), CertificateSigningRequest: csr})
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for _, der := range append([][]byte{resp.GetLeafCertificate()}, resp.GetIntermediateCertificates()...) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse the answer's certificate: %w", err)
		}
		chain = append(chain, cert)
	}
	return chain, nil
}

// issuerDir is a directory laid out as the kubelet lays out a mounted Secret: tls.crt and
// tls.key are symlinks into ..data, itself a symlink to a timestamped directory that is
// swapped atomically on every update.
type issuerDir struct {
	dir string
	n   int
}

func newIssuerDir(t *testing.T, dir string, issuer *meshid.Issuer) *issuerDir {
	t.Helper()
	d := &issuerDir{dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d.write(t, issuer)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// write swaps in issuer's certificate and key atomically.
func (d *issuerDir) write(t *testing.T, issuer *meshid.Issuer) {
	t.Helper()
	d.n++
	version := fmt.Sprintf("..v%d", d.n)
	if err := os.Mkdir(filepath.Join(d.dir, version), 0o700); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, version, "tls.crt"), issuer.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, version, "tls.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// token returns a TokenRequest token of ServiceAccount sa in ns, with extra kubectl flags.
func (c *cluster) token(t *testing.T, ns, sa string, extra ...string) string {
	t.Helper()
	args := append([]string{"-n", ns, "create", "token", sa, "--duration", "10m"}, extra...)
	return strings.TrimSpace(c.must(t, args...))
}
