package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Candidate names, in the order the tables list them.
const (
	candDirect    = "direct"
	candLightmesh = "lightmesh"
	candHAProxy   = "haproxy"
	// candHAProxyIPTables is HAProxy behind the iptables rules lightmesh runs behind:
	// what transparent interception costs, apart from the proxy.
	candHAProxyIPTables = "haproxy-iptables"
	// candHAProxyTCP is HAProxy relaying the TCP connection as it is (mode tcp, no TLS, no
	// HTTP) in both hops: the floor, what the simplest two-hop forwarder costs here.
	candHAProxyTCP = "haproxy-tcp"
	candNginx      = "nginx"
)

var allCandidates = []string{candDirect, candLightmesh, candHAProxy, candHAProxyIPTables, candHAProxyTCP, candNginx}

// defaultCandidates are run unless -candidates says otherwise: haproxy-iptables and
// haproxy-tcp are controls (interception measured at no visible cost on 2026-11-26,
// BENCHMARKS.md; the floor of any forwarder), not peers.
var defaultCandidates = []string{candDirect, candLightmesh, candHAProxy, candNginx}

// candidate is one path from the client namespace to the server: direct, or through two
// proxies with mTLS between them.
type candidate struct {
	name   string
	client string // namespace of the load generator and proxy A
	server string // namespace of the application and proxy B
	target string // where the load generator connects
	// proxies are A (client side) and B (server side); none for direct.
	proxies []*proc
}

// setupConfig is what every candidate's setup needs.
type setupConfig struct {
	pki          *pki
	meshProxy    string
	meshInit     string
	threads      int // workers per proxy: GOMAXPROCS, nbthread, worker_processes
	clientCPU    int
	serverCPU    int
	pprof        bool
	proxyLogMode string
}

// setup builds the candidate's namespaces, application and proxies and checks that one
// request goes through.
func (e *env) setup(name string, cfg setupConfig) (*candidate, error) {
	client, server, err := e.pair(name)
	if err != nil {
		return nil, err
	}
	c := &candidate{name: name, client: client, server: server}
	app, err := e.startRole(name+" app", "server", startOpts{ns: server, cpu: cfg.serverCPU}, "ready", serverIP+":"+appPort)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	switch name {
	case candDirect:
		c.target = serverIP + ":" + appPort
	case candLightmesh:
		c.target = serverIP + ":" + appPort // redirected to proxy A by iptables
		err = e.setupLightmesh(c, dir, cfg)
	case candHAProxy:
		c.target = "127.0.0.1:" + proxyPort
		err = e.setupHAProxy(c, dir, cfg, false)
	case candHAProxyIPTables:
		c.target = serverIP + ":" + appPort // redirected to proxy A by iptables
		err = e.setupHAProxy(c, dir, cfg, true)
	case candHAProxyTCP:
		c.target = "127.0.0.1:" + proxyPort
		err = e.setupPair(c, dir, cfg, func(side string, f certFiles) (string, []string) {
			conf := filepath.Join(dir, "haproxy-"+side+".cfg")
			return conf, []string{"haproxy", "-db", "-f", conf}
		}, func(side string, f certFiles) string { return haproxyTCPConfig(side, cfg.threads) })
	case candNginx:
		c.target = "127.0.0.1:" + proxyPort
		err = e.setupNginx(c, dir, cfg)
	default:
		err = fmt.Errorf("unknown candidate %q; known: %s", name, strings.Join(allCandidates, ", "))
	}
	if err != nil {
		return nil, err
	}
	url := "http://" + c.target + "/"
	if err := e.waitOK(client, url, append([]*proc{app}, c.proxies...)...); err != nil {
		return nil, fmt.Errorf("%s does not carry traffic: %w", name, err)
	}
	return c, nil
}

// setupLightmesh runs mesh-proxy-init's rules and a mesh-proxy (UID 2102, identity from
// files, static discovery naming the server's identity) in both namespaces, as the proxy's
// integration test does.
func (e *env) setupLightmesh(c *candidate, dir string, cfg setupConfig) error {
	sides := []struct {
		ns, id, ip string
		cpu        int
		env        []string
	}{
		{c.client, clientSpiffeID, clientIP, cfg.clientCPU, []string{
			"MESH_PROXY_STATIC_DESTINATIONS=" + serverIP + ":" + appPort + "=" + serverIP + ":" + appPort + "@" + serverSpiffeID,
		}},
		{c.server, serverSpiffeID, serverIP, cfg.serverCPU, nil},
	}
	for i, s := range sides {
		idDir := filepath.Join(dir, "identity-"+strconv.Itoa(i))
		if err := os.Mkdir(idDir, 0o755); err != nil {
			return err
		}
		if _, err := cfg.pki.writeMeshIdentity(idDir, s.id); err != nil {
			return err
		}
		if err := intercept(s.ns, cfg.meshInit); err != nil {
			return err
		}
		env := append([]string{
			"MESH_PROXY_IDENTITY_DIR=" + idDir,
			"MESH_PROXY_POD_IP=" + s.ip,
			"MESH_PROXY_LOG_FORMAT=text",
			"MESH_PROXY_LOG_LEVEL=" + cfg.proxyLogMode,
			"MESH_PROXY_SHUTDOWN_GRACE=2s",
			"GOMAXPROCS=" + strconv.Itoa(cfg.threads),
		}, s.env...)
		if cfg.pprof {
			env = append(env, "MESH_PROXY_ADMIN_PPROF=true")
		}
		p, err := e.start("lightmesh proxy "+"AB"[i:i+1], startOpts{ns: s.ns, cpu: s.cpu, env: env},
			append(slices.Clone(asProxyUser), cfg.meshProxy)...)
		if err != nil {
			return err
		}
		c.proxies = append(c.proxies, p)
	}
	for i, s := range sides {
		if err := e.waitOK(s.ns, adminURL+"/ready", c.proxies[i]); err != nil {
			return err
		}
	}
	return nil
}

// intercept runs mesh-proxy-init's rules in ns: connections out of it, but the proxy user's,
// go to 127.0.0.1:4140, and connections into it to port 4143.
func intercept(ns, meshInit string) error {
	if out, err := runCmd("ip", "netns", "exec", ns, meshInit, "--iptables-mode", "nft"); err != nil {
		return fmt.Errorf("mesh-proxy-init in %s: %w: %s", ns, err, out)
	}
	return nil
}

// asProxyUser runs the next program as the proxy's user (2102), whose connections
// mesh-proxy-init's rules leave alone.
var asProxyUser = []string{"setpriv", "--reuid", "2102", "--regid", "2102", "--clear-groups"}

// haproxyConfig is one HAProxy instance in HTTP mode: A takes plaintext from the client and
// speaks HTTP/2 over mTLS (TLS 1.3) to B at peer, which checks the client certificate and
// forwards HTTP/1.1 to the application, keeping connections alive on both sides. Behind
// mesh-proxy-init's rules, peer is the application's address (redirected to B's 4143 on
// arrival), as a lightmesh proxy sends to it.
func haproxyConfig(side string, threads int, peer string, f certFiles) string {
	global := fmt.Sprintf(`global
    nbthread %d
    maxconn 4000
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 5s
    timeout client 90s
    timeout server 90s
    http-reuse always
`, threads)
	if side == "A" {
		return global + fmt.Sprintf(`frontend outbound
    bind 127.0.0.1:%s
    default_backend peer
backend peer
    server b %s ssl verify required ca-file %s crt %s alpn h2 sni str(%s) verifyhost %s
`, proxyPort, peer, f.CA, f.Combined, serverDNSName, serverDNSName)
	}
	return global + fmt.Sprintf(`frontend inbound
    bind %s:%s ssl crt %s ca-file %s verify required alpn h2,http/1.1
    default_backend app
backend app
    server app %s:%s
`, serverIP, peerPort, f.Combined, f.CA, serverIP, appPort)
}

// haproxyTCPConfig is one HAProxy instance relaying TCP unchanged: A from the client to B,
// B to the application; no TLS, no HTTP parsing.
func haproxyTCPConfig(side string, threads int) string {
	conf := fmt.Sprintf(`global
    nbthread %d
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 90s
    timeout server 90s
`, threads)
	if side == "A" {
		return conf + fmt.Sprintf(`listen outbound
    bind 127.0.0.1:%s
    server b %s:%s
`, proxyPort, serverIP, peerPort)
	}
	return conf + fmt.Sprintf(`listen inbound
    bind %s:%s
    server app %s:%s
`, serverIP, peerPort, serverIP, appPort)
}

// setupHAProxy runs HAProxy as A and B; intercepted, behind mesh-proxy-init's rules and as
// the proxy's user, as lightmesh runs.
func (e *env) setupHAProxy(c *candidate, dir string, cfg setupConfig, intercepted bool) error {
	peer := serverIP + ":" + peerPort
	var prefix []string
	if intercepted {
		for _, ns := range []string{c.client, c.server} {
			if err := intercept(ns, cfg.meshInit); err != nil {
				return err
			}
		}
		peer, prefix = serverIP+":"+appPort, asProxyUser
	}
	return e.setupPair(c, dir, cfg, func(side string, f certFiles) (string, []string) {
		conf := filepath.Join(dir, "haproxy-"+side+".cfg")
		return conf, append(slices.Clone(prefix), "haproxy", "-db", "-f", conf)
	}, func(side string, f certFiles) string { return haproxyConfig(side, cfg.threads, peer, f) })
}

// nginxConfig is one nginx instance (one process, no master): A proxies plaintext from the
// client over mTLS (TLS 1.3, HTTP/1.1 keep-alive: nginx has no HTTP/2 upstreams) to B, which
// checks the client certificate and forwards to the application.
func nginxConfig(side, dir string, threads int, f certFiles) string {
	head := fmt.Sprintf(`daemon off;
master_process off;
worker_processes %d;
pid %s/nginx-%s.pid;
error_log stderr warn;
events { worker_connections 4000; }
http {
    access_log off;
    client_body_temp_path %s/tmp-%s-body;
    proxy_temp_path %s/tmp-%s-proxy;
    keepalive_requests 1000000;
    keepalive_timeout 90s;
    client_body_buffer_size 16k;
`, threads, dir, side, dir, side, dir, side)
	if side == "A" {
		return head + fmt.Sprintf(`    upstream peer { server %s:%s; keepalive 256; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:%s;
        location / {
            proxy_pass https://peer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_ssl_certificate %s;
            proxy_ssl_certificate_key %s;
            proxy_ssl_trusted_certificate %s;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 3;
            proxy_ssl_name %s;
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_session_reuse on;
        }
    }
}
`, serverIP, peerPort, proxyPort, f.Chain, f.Key, f.CA, serverDNSName)
	}
	return head + fmt.Sprintf(`    upstream app { server %s:%s; keepalive 256; keepalive_requests 1000000; }
    server {
        listen %s:%s ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_client_certificate %s;
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.3;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }
    }
}
`, serverIP, appPort, serverIP, peerPort, f.Chain, f.Key, f.CA)
}

func (e *env) setupNginx(c *candidate, dir string, cfg setupConfig) error {
	return e.setupPair(c, dir, cfg, func(side string, f certFiles) (string, []string) {
		conf := filepath.Join(dir, "nginx-"+side+".conf")
		return conf, []string{"nginx", "-p", dir, "-c", conf, "-e", "stderr"}
	}, func(side string, f certFiles) string { return nginxConfig(side, dir, cfg.threads, f) })
}

// setupPair writes certificates and configuration for a classic proxy's two instances and
// starts them, A in the client namespace and B in the server namespace.
func (e *env) setupPair(c *candidate, dir string, cfg setupConfig,
	command func(side string, f certFiles) (conf string, argv []string),
	config func(side string, f certFiles) string,
) error {
	for _, side := range []string{"A", "B"} {
		name, ns, cpu := clientDNSName, c.client, cfg.clientCPU
		if side == "B" {
			name, ns, cpu = serverDNSName, c.server, cfg.serverCPU
		}
		f, err := cfg.pki.writeDNSLeaf(dir, name)
		if err != nil {
			return err
		}
		conf, argv := command(side, f)
		if err := os.WriteFile(conf, []byte(config(side, f)), 0o644); err != nil {
			return err
		}
		p, err := e.start(c.name+" proxy "+side, startOpts{ns: ns, cpu: cpu}, argv...)
		if err != nil {
			return err
		}
		c.proxies = append(c.proxies, p)
	}
	return nil
}

// measurement is one load run against one candidate: what the generator saw and what each
// proxy spent.
type measurement struct {
	Candidate string     `json:"candidate"`
	Rep       int        `json:"rep"`
	Spec      loadSpec   `json:"spec"`
	Result    loadResult `json:"result"`
	// CPUPer1k is CPU-seconds per 1,000 completed requests, per proxy (A, B).
	CPUPer1k []float64 `json:"cpu_s_per_1k,omitempty"`
	// HWM is each proxy's peak RSS so far (VmHWM), MiB.
	HWM []float64 `json:"peak_rss_mib,omitempty"`
	// WakeupsPerReq are each proxy's voluntary context switches (a thread went to sleep)
	// per completed request, all threads together.
	WakeupsPerReq []float64 `json:"wakeups_per_req,omitempty"`
}

// load runs the load generator in the candidate's client namespace and measures the proxies'
// CPU between the start and the end of the measured period.
func (e *env) load(ctx context.Context, c *candidate, spec loadSpec, cpu int) (measurement, error) {
	spec.Target = c.target
	spec.Host = serverIP + ":" + appPort
	m := measurement{Candidate: c.name, Spec: spec}
	b, err := json.Marshal(spec)
	if err != nil {
		return m, err
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Duration+spec.Drain+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", c.client, "taskset", "-c", strconv.Itoa(cpu), e.self, string(b))
	cmd.Env = append(os.Environ(), roleEnv+"=load", "GOMAXPROCS=2") // see schedule
	cmd.SysProcAttr = pdeath()
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return m, err
	}
	if err := cmd.Start(); err != nil {
		return m, err
	}
	before := make([]float64, len(c.proxies))
	after := make([]float64, len(c.proxies))
	sysBefore := make([]float64, len(c.proxies))
	sysAfter := make([]float64, len(c.proxies))
	snapshot := func(into, sys []float64) {
		for i, p := range c.proxies {
			into[i], _ = cpuSeconds(p.Pid())
			sys[i], _ = wakeups(p.Pid())
		}
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	state := 0
	for sc.Scan() {
		switch line := sc.Text(); {
		case state == 0 && line == "start":
			snapshot(before, sysBefore)
			state = 1
		case state == 1 && line == "end":
			snapshot(after, sysAfter)
			state = 2
		case state == 2:
			if err := json.Unmarshal([]byte(line), &m.Result); err != nil {
				return m, fmt.Errorf("load result: %w", err)
			}
			state = 3
		}
	}
	werr := cmd.Wait()
	if werr != nil || state != 3 {
		return m, fmt.Errorf("load generator against %s failed (%w): %s", c.name, werr, strings.TrimSpace(stderr.String()))
	}
	for i, p := range c.proxies {
		if p.exited() {
			return m, fmt.Errorf("%s exited during the load: %w: %s", p.name, p.exitErr(), p.logs)
		}
		per1k, perReq := 0.0, 0.0
		if m.Result.Completed > 0 {
			per1k = (after[i] - before[i]) / float64(m.Result.Completed) * 1000
			perReq = (sysAfter[i] - sysBefore[i]) / float64(m.Result.Completed)
		}
		m.CPUPer1k = append(m.CPUPer1k, per1k)
		m.WakeupsPerReq = append(m.WakeupsPerReq, perReq)
		hwm, _ := memMiB(p.Pid(), "VmHWM")
		m.HWM = append(m.HWM, hwm)
	}
	return m, nil
}
