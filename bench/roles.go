package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// roleEnv names the role a re-executed copy of this program plays inside a network namespace
// (the server, the load generator, ...); unset, the program is the harness.
const roleEnv = "LM_BENCH_ROLE"

// runRole runs the role named by roleEnv with args and returns the exit code; ok is false
// when the variable is unset.
func runRole(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int, ok bool) {
	role := os.Getenv(roleEnv)
	if role == "" {
		return 0, false
	}
	var err error
	switch role {
	case "server":
		err = roleServer(args, stdin, stdout)
	case "load":
		err = roleLoad(args, stdout)
	case "hold":
		err = roleHold(args, stdin, stdout)
	case "get":
		err = roleGet(args, stdout)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", role, err)
		return 1, true
	}
	return 0, true
}

// roleServer serves the application on args[0] (POST /echo answers with a body as long as
// the request's; anything else 200 "ok") and prints "ready" once it listens; it stops when
// stdin closes.
func roleServer(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: server ADDR")
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	payload := make([]byte, 64<<10)
	for i := range payload {
		payload[i] = 'y'
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			n = min(n, int64(len(payload)))
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			_, _ = w.Write(payload[:n])
		}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintln(stdout, "ready")
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		srv.Close()
	}()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// roleLoad runs one open-loop load (args[0]: a loadSpec in JSON). It prints "start" when
// the connections are warm and the measured period begins, then "end" and the loadResult in
// JSON.
func roleLoad(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: load SPEC-JSON")
	}
	var spec loadSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("parse load spec: %w", err)
	}
	res, err := runLoad(spec, func() { fmt.Fprintln(stdout, "start") })
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "end\n%s\n", b)
	return nil
}

// roleHold opens args[2] connections to args[0] (Host args[1]), one request each, prints
// "held" and keeps them open until stdin closes.
func roleHold(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: hold TARGET HOST N")
	}
	n, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	return holdConns(args[0], args[1], n, 1024,
		func() { fmt.Fprintln(stdout, "held") },
		func() { _, _ = io.Copy(io.Discard, bufio.NewReader(stdin)) })
}

// roleGet fetches args[0] and prints the status code and body (or writes the body to
// args[1] when given).
func roleGet(args []string, stdout io.Writer) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("usage: get URL [FILE]")
	}
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if len(args) == 2 {
		f, err := os.Create(args[1])
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d", resp.StatusCode)
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d %s", resp.StatusCode, body)
	return nil
}
