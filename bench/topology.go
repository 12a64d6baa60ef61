package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addresses inside every candidate's pair of namespaces (each pair is its own world, so
// every candidate sees the same addresses).
const (
	clientIP = "10.99.0.1"
	serverIP = "10.99.0.2"
	appPort  = "8080"
	// proxyPort is where the client reaches HAProxy's and nginx's client-side instance (the
	// mesh's outbound port; lightmesh gets there through proxy-init's iptables rules instead).
	proxyPort = "4140"
	// peerPort is the server-side instance's mTLS port (the mesh's inbound port).
	peerPort = "4143"
	adminURL = "http://127.0.0.1:4191"
	// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100 on Linux).
	clockTicks = 100
	// commandTimeout bounds every setup command.
	commandTimeout = 30 * time.Second
)

// env is one run's world: a temporary folder, network namespaces and processes, all
// removed by cleanup.
type env struct {
	id     string // random, in every namespace name
	dir    string
	self   string // this program, re-executed for the roles
	log    io.Writer
	mu     sync.Mutex
	procs  []*proc
	spaces []string
}

func newEnv(self string, log io.Writer) (*env, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lm-bench-")
	if err != nil {
		return nil, err
	}
	// mesh-proxy runs as UID 2102 and must read its binary and identity files.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &env{id: hex.EncodeToString(b), dir: dir, self: self, log: log}, nil
}

// cleanup stops every process by PID (SIGTERM, then SIGKILL after 5 s), deletes the
// namespaces and the folder. It reports what it could not undo.
func (e *env) cleanup() error {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	for i := len(e.spaces) - 1; i >= 0; i-- {
		if out, err := runCmd("ip", "netns", "delete", e.spaces[i]); err != nil {
			errs = append(errs, fmt.Errorf("delete network namespace %s: %w: %s", e.spaces[i], err, out))
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// runCmd runs a setup command with a timeout and returns its combined output.
func runCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// pair makes a client and a server namespace linked by a veth pair (eth0 on both sides,
// clientIP and serverIP), loopback up.
func (e *env) pair(name string) (client, server string, err error) {
	client = "lmb-" + e.id + "-" + name + "-c"
	server = "lmb-" + e.id + "-" + name + "-s"
	for _, ns := range []string{client, server} {
		if out, err := runCmd("ip", "netns", "add", ns); err != nil {
			return "", "", fmt.Errorf("ip netns add %s: %w: %s", ns, err, out)
		}
		e.spaces = append(e.spaces, ns)
		if out, err := runCmd("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return "", "", fmt.Errorf("loopback up in %s: %w: %s", ns, err, out)
		}
	}
	for _, args := range [][]string{
		{"-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", server},
		{"-n", client, "address", "add", clientIP + "/24", "dev", "eth0"},
		{"-n", server, "address", "add", serverIP + "/24", "dev", "eth0"},
		{"-n", client, "link", "set", "eth0", "up"},
		{"-n", server, "link", "set", "eth0", "up"},
	} {
		if out, err := runCmd("ip", args...); err != nil {
			return "", "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return client, server, nil
}

// proc is a process the harness started inside a namespace.
type proc struct {
	name  string
	cmd   *exec.Cmd
	logs  *syncBuffer
	stdin io.WriteCloser
	done  chan struct{}
	err   error
}

// Pid is the program's own PID: `ip netns exec`, taskset and setpriv exec the next program.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// stop closes stdin, sends SIGTERM and, after 5 s, SIGKILL, by PID.
func (p *proc) stop() {
	if p.stdin != nil {
		p.stdin.Close()
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(p.Pid(), syscall.SIGKILL)
		<-p.done
	}
}

// exitErr is how the process ended (call after done is closed).
func (p *proc) exitErr() error {
	if p.err == nil {
		return errors.New("exit status 0")
	}
	return p.err
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startOpts say how to start a process.
type startOpts struct {
	ns    string
	cpu   int // taskset CPU; negative: not pinned
	env   []string
	stdin bool // keep a stdin pipe (roles stop when it closes)
	// stdout, when set, receives stdout instead of the log buffer.
	stdout io.Writer
}

// start runs argv inside a namespace, pinned, and registers it for cleanup.
func (e *env) start(name string, o startOpts, argv ...string) (*proc, error) {
	args := []string{"netns", "exec", o.ns}
	if o.cpu >= 0 {
		args = append(args, "taskset", "-c", strconv.Itoa(o.cpu))
	}
	cmd := exec.Command("ip", append(args, argv...)...)
	cmd.Env = append(os.Environ(), o.env...)
	// If the harness dies, its processes die with it.
	cmd.SysProcAttr = pdeath()
	p := &proc{name: name, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if o.stdout != nil {
		cmd.Stdout = o.stdout
	}
	if o.stdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.stdin = w
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// startRole runs this program in a role and waits for its first stdout line to be want.
func (e *env) startRole(name, role string, o startOpts, want string, args ...string) (*proc, error) {
	pr, pw := io.Pipe()
	o.stdout = pw
	o.stdin = true
	o.env = append(o.env, roleEnv+"="+role, "GOMAXPROCS=1")
	p, err := e.start(name, o, append([]string{e.self}, args...)...)
	if err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			line <- sc.Text()
		} else {
			line <- ""
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		<-p.done
		pw.Close()
	}()
	select {
	case l := <-line:
		if l != want {
			return nil, fmt.Errorf("%s did not start (said %q): %s", name, l, p.logs)
		}
		return p, nil
	case <-time.After(commandTimeout):
		return nil, fmt.Errorf("%s did not start within %s: %s", name, commandTimeout, p.logs)
	}
}

// get runs the get role in ns: the status and body of url.
func (e *env) get(ns, url string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, e.self, url}, args...)...)
	cmd.Env = append(os.Environ(), roleEnv+"=get")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// waitOK polls url from ns until it answers 200, for at most 30 s; every watched process
// must stay alive meanwhile.
func (e *env) waitOK(ns, url string, watched ...*proc) error {
	deadline := time.Now().Add(commandTimeout)
	var last string
	for {
		out, err := e.get(ns, url)
		if err == nil && strings.HasPrefix(out, "200") {
			return nil
		}
		last = out
		if err != nil {
			last = err.Error()
		}
		for _, p := range watched {
			if p.exited() {
				return fmt.Errorf("%s exited (%w) before %s answered: %s", p.name, p.exitErr(), url, p.logs)
			}
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, p := range watched {
				fmt.Fprintf(&logs, "\n%s:\n%s", p.name, p.logs)
			}
			return fmt.Errorf("%s from %s did not answer 200 within %s (last: %s)%s", url, ns, commandTimeout, last, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cpuSeconds is the process's user plus system CPU time, all threads, from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(utime+stime) / clockTicks, nil
}

// wakeups is how often the process's threads have gone to sleep so far: the sum of
// voluntary_ctxt_switches over /proc/PID/task/*/status.
func wakeups(pid int) (float64, error) {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	if err != nil {
		return 0, err
	}
	if len(tasks) == 0 {
		return 0, fmt.Errorf("process %d has no tasks (has it exited?)", pid)
	}
	total := 0.0
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // the thread ended meanwhile
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				n, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					return 0, err
				}
				total += n
			}
		}
	}
	return total, nil
}

// memMiB reads a Vm* field (VmRSS, VmHWM) of /proc/PID/status, in MiB.
func memMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected %s line %q", field, line)
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Keep the last 64 KiB: enough to explain a failure, bounded for long runs.
	if s.b.Len() > 64<<10 {
		tail := append([]byte{}, s.b.Bytes()[s.b.Len()-32<<10:]...)
		s.b.Reset()
		s.b.Write(tail)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pdeath makes a child die with the harness.
func pdeath() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
