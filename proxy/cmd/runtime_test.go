package cmd

import (
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
		want               int
	}{
		{"one worker by default", unset, 8, 8, 1},
		{"a CPU limit chose fewer Ps: kept", unset, 2, 8, 0},
		{"GOMAXPROCS set: kept", set, 4, 8, 0},
		{"one CPU", unset, 1, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sidecarWorkers(tc.lookup, tc.gomaxprocs, tc.numCPU); got != tc.want {
				t.Errorf("sidecarWorkers(GOMAXPROCS=%d, CPUs=%d) = %d, want %d", tc.gomaxprocs, tc.numCPU, got, tc.want)
			}
		})
	}
}
