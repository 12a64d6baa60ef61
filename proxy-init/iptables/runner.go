package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// Runner runs a program (an iptables binary) with arguments and standard input and returns
// its standard output. Errors carry what the program printed on stderr.
type Runner interface {
	Run(ctx context.Context, name string, args []string, stdin string) (string, error)
}

// ExecRunner runs programs for real.
type ExecRunner struct{}

// Run runs name and waits for it, or kills it when ctx ends.
func (ExecRunner) Run(ctx context.Context, name string, args []string, stdin string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return stdout.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}

// Call is one program run a FakeRunner saw.
type Call struct {
	Name  string
	Args  []string
	Stdin string
}

// String renders the call as a shell-like command line.
func (c Call) String() string { return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " ")) }

// FakeRunner is a Runner for tests: it records calls and answers from its maps, keyed by
// program name. A program in neither map prints nothing and succeeds.
type FakeRunner struct {
	// Outputs is what each program prints.
	Outputs map[string]string
	// Errors is what each program fails with.
	Errors map[string]error

	mu    sync.Mutex
	calls []Call
}

// Run records the call and answers it.
func (f *FakeRunner) Run(_ context.Context, name string, args []string, stdin string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, Call{Name: name, Args: append([]string(nil), args...), Stdin: stdin})
	return f.Outputs[name], f.Errors[name]
}

// Calls returns the calls made so far, in order.
func (f *FakeRunner) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Restores returns the calls of iptables-restore programs (the ones that change rules).
func (f *FakeRunner) Restores() []Call {
	var restores []Call
	for _, c := range f.Calls() {
		if strings.HasSuffix(c.Name, "-restore") {
			restores = append(restores, c)
		}
	}
	return restores
}
