package cmd

import (
	"io/fs"
	"slices"
	"testing"
)

func TestPollingEnviron(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		poll    bool
		want    []string // nil: no re-execution
	}{
		{"adds GODEBUG", []string{"PATH=/bin"}, true, []string{"PATH=/bin", "GODEBUG=" + pollingSchedtrace}},
		{"keeps other GODEBUG settings", []string{"GODEBUG=http2debug=1", "HOME=/"}, true, []string{"HOME=/", "GODEBUG=http2debug=1," + pollingSchedtrace}},
		{"already polling: no loop", []string{"GODEBUG=" + pollingSchedtrace}, true, nil},
		{"the operator's schedtrace wins", []string{"GODEBUG=madvdontneed=1, schedtrace=0"}, true, nil},
		{"a look-alike setting is not schedtrace", []string{"GODEBUG=xschedtrace=1"}, true, []string{"GODEBUG=xschedtrace=1," + pollingSchedtrace}},
		{"polling off", []string{"PATH=/bin"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pollingEnviron(tc.environ, tc.poll)
			if (got == nil) != (tc.want == nil) || !slices.Equal(got, tc.want) {
				t.Errorf("pollingEnviron(%q, %v) = %q, want %q", tc.environ, tc.poll, got, tc.want)
			}
		})
	}
}

func TestSidecarWorkers(t *testing.T) {
	unset := func(string) (string, bool) { return "", false }
	set := func(name string) (string, bool) { return "4", name == "GOMAXPROCS" }
	for _, tc := range []struct {
		name               string
		lookup             func(string) (string, bool)
		gomaxprocs, numCPU int
		cpuLimit           float64
		want               int
	}{
		{"one worker by default", unset, 8, 8, 0, 1},
		{"a limit of one CPU: one worker (Go's default is 2)", unset, 2, 8, 1, 1},
		{"half a CPU: one worker", unset, 2, 8, 0.5, 1},
		{"1.5 CPUs: two workers", unset, 2, 8, 1.5, 2},
		{"a limit above the CPUs: every CPU", unset, 2, 2, 4, 2},
		{"a limit equal to the CPUs: every CPU", unset, 4, 4, 4, 4},
		{"an unread limit (cgroup v1) chose fewer Ps: kept", unset, 3, 8, 0, 0},
		{"GOMAXPROCS set: kept", set, 4, 8, 2, 0},
		{"one CPU", unset, 1, 1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sidecarWorkers(tc.lookup, tc.gomaxprocs, tc.numCPU, tc.cpuLimit); got != tc.want {
				t.Errorf("sidecarWorkers(GOMAXPROCS=%d, CPUs=%d, limit=%v) = %d, want %d", tc.gomaxprocs, tc.numCPU, tc.cpuLimit, got, tc.want)
			}
		})
	}
}

func TestCgroupCPULimit(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  float64
	}{
		{"a container's own namespace", map[string]string{
			"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/cpu.max": "150000 100000\n"}, 1.5},
		{"a cgroup path", map[string]string{
			"/proc/self/cgroup":                       "0::/kubepods/pod1/c1\n",
			"/sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "50000 100000\n",
			"/sys/fs/cgroup/cpu.max":                  "max 100000\n",
		}, 0.5},
		{"no limit", map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/cpu.max": "max 100000\n"}, 0},
		{"no cpu controller", map[string]string{"/proc/self/cgroup": "0::/\n"}, 0},
		{"cgroup v1", map[string]string{"/proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n"}, 0},
		{"malformed", map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/cpu.max": "lots\n"}, 0},
		{"no proc", map[string]string{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cgroupCPULimit(files(tc.files)); got != tc.want {
				t.Errorf("cgroupCPULimit = %v, want %v", got, tc.want)
			}
		})
	}
}
