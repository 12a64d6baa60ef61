package cmd

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// The proxy's Go runtime settings (proxy/README.md, "Runtime"). Both matter on a proxy that
// spends most of its CPU handing requests between goroutines and the kernel: measured with
// `make bench`, a sidecar's own threads woke 7 times per request with Go's defaults against
// HAProxy's 3, and each wake-up is a context switch.

// pollingSchedtrace is the GODEBUG setting that keeps the runtime's monitor thread (sysmon)
// from deep-sleeping while every P is idle. A deep-sleeping sysmon is woken by the next
// system call and then polls every 20 µs for the following millisecond: on a proxy whose
// worker idles between requests that is several thread wake-ups per request. With schedtrace
// set the monitor never deep-sleeps; it backs off to one wake-up every 10 ms instead. The
// value is the longest period GODEBUG accepts (2^31-1 ms, 24.8 days), so the trace it
// enables prints at most one line per 24.8 days of host uptime.
const pollingSchedtrace = "schedtrace=2147483647"

// pollingEnviron returns the environment the proxy must be re-executed with so that the
// runtime's monitor keeps polling, or nil when the current process needs no re-execution:
// polling is off, or GODEBUG already sets schedtrace (any value, so that an operator's own
// setting wins and the re-executed process does not loop).
func pollingEnviron(environ []string, poll bool) []string {
	if !poll {
		return nil
	}
	env := make([]string, 0, len(environ)+1)
	godebug := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v
			continue
		}
		env = append(env, kv)
	}
	for _, setting := range strings.Split(godebug, ",") {
		if strings.HasPrefix(strings.TrimSpace(setting), "schedtrace=") {
			return nil
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(env, "GODEBUG="+godebug+pollingSchedtrace)
}

// execWithPolling re-executes the running binary with pollingEnviron's environment when it
// needs one. It returns only when it did not re-execute, with an error when exec failed
// (the proxy then runs on with the runtime's defaults).
func execWithPolling(poll bool) error {
	env := pollingEnviron(os.Environ(), poll)
	if env == nil {
		return nil
	}
	// The binary's own path keeps the process's name (ps, top: mesh-proxy, not exe);
	// /proc/self/exe still runs it when the file was replaced or removed.
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, env)
	}
	if err != nil {
		err = syscall.Exec("/proc/self/exe", os.Args, env)
	}
	return fmt.Errorf("re-executing with GODEBUG=%s: %w", pollingSchedtrace, err)
}

// sidecarWorkers is the number of Ps (GOMAXPROCS) a sidecar runs with, Linkerd's rule: one
// by default, as many as the container's CPU limit (mesh inject's
// config.lightmesh.io/proxy-cpu-limit) rounded up when it has one (at most the CPUs the
// process may use), and 0, the runtime's choice, when GOMAXPROCS is set. One worker keeps a
// sidecar from competing with its application for the pod's CPUs, and with one P a goroutine
// made runnable waits for the running one instead of waking another thread. (The runtime's
// own default from a limit rounds a limit under 2 up to 2 Ps.) A limit this code cannot read
// (cgroup v1) but that made the runtime choose fewer Ps than CPUs (gomaxprocs) is kept too.
func sidecarWorkers(lookupEnv func(string) (string, bool), gomaxprocs, numCPU int, cpuLimit float64) int {
	if _, set := lookupEnv("GOMAXPROCS"); set {
		return 0
	}
	if cpuLimit > 0 {
		return max(1, min(numCPU, int(math.Ceil(cpuLimit))))
	}
	if gomaxprocs < numCPU {
		return 0
	}
	return 1
}

// setSidecarWorkers applies sidecarWorkers and returns the GOMAXPROCS the proxy runs with.
func setSidecarWorkers() int {
	if n := sidecarWorkers(os.LookupEnv, runtime.GOMAXPROCS(0), runtime.NumCPU(), cgroupCPULimit(os.ReadFile)); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return runtime.GOMAXPROCS(0)
}

// cgroupCPULimit is the CPU limit of the process's cgroup (cgroup v2: quota / period in
// cpu.max), 0 when it has none or it cannot be read (cgroup v1, deprecated in Kubernetes, or a
// host with the cpu controller on v1, as the benchmark VM).
func cgroupCPULimit(readFile func(string) ([]byte, error)) float64 {
	self, err := readFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(self), "\n") {
		path, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		cpuMax, err := readFile(filepath.Join("/sys/fs/cgroup", path, "cpu.max"))
		if err != nil {
			return 0
		}
		return parseCPUMax(string(cpuMax))
	}
	return 0
}

// parseCPUMax reads a cgroup v2 cpu.max ("QUOTA PERIOD", QUOTA "max" without a limit) as
// CPUs, 0 for none.
func parseCPUMax(s string) float64 {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	quota, err := strconv.ParseFloat(f[0], 64)
	if err != nil || quota <= 0 {
		return 0
	}
	period, err := strconv.ParseFloat(f[1], 64)
	if err != nil || period <= 0 {
		return 0
	}
	return quota / period
}
