package cmd

import (
	"fmt"
	"os"
	"runtime"
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

// sidecarWorkers is the number of Ps (GOMAXPROCS) a sidecar runs with: one, as Linkerd's
// proxy runs one worker by default, unless GOMAXPROCS is set or the container's CPU limit
// (mesh inject's config.lightmesh.io/proxy-cpu-limit) already made the runtime choose
// fewer Ps than the machine has CPUs; 0 leaves the runtime's choice. One worker keeps a
// sidecar from competing with its application for the pod's CPUs, and with one P a
// goroutine made runnable waits for the running one instead of waking another thread.
func sidecarWorkers(lookupEnv func(string) (string, bool), gomaxprocs, numCPU int) int {
	if _, set := lookupEnv("GOMAXPROCS"); set || gomaxprocs < numCPU {
		return 0
	}
	return 1
}

// setSidecarWorkers applies sidecarWorkers and returns the GOMAXPROCS the proxy runs with.
func setSidecarWorkers() int {
	if n := sidecarWorkers(os.LookupEnv, runtime.GOMAXPROCS(0), runtime.NumCPU()); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return runtime.GOMAXPROCS(0)
}
