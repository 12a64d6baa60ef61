// Command e2e-echo is the small program the end-to-end tests run in pods.
//
//	e2e-echo serve [--addr :8080] [--drain 0s] [--quiet] [--fail-every 0] [--hang-every 0] [--reset-every 0]
//	    answers every HTTP request with the pod's name (its host name), in the body and in the
//	    X-Echo-Pod header, and logs the request (not with --quiet). With --fail-every N, every
//	    Nth request (the Nth, 2Nth, ...) is answered 500 instead, so exactly 1/N fail; with
//	    --hang-every N it is never answered, with --reset-every N its connection is reset. On SIGTERM it keeps serving
//	    for --drain (/ready answers 503 meanwhile) as a well-behaved app does while its endpoint
//	    is being removed, then stops, letting requests in flight finish.
//	e2e-echo origdst-serve [--outbound 127.0.0.1:4140] [--inbound :4143]
//	    stands where the proxy will: answers HTTP on the proxy's outbound and inbound ports
//	    with the connection's original destination (SO_ORIGINAL_DST), as proxy-init's
//	    iptables rules redirected it: "outbound original-destination 10.244.0.7:8080".
//	e2e-echo get URL [--want-distinct N] [--timeout 60s] [--grep TEXT]
//	    sends GETs to URL, each on a new connection, until N different answers were seen (so a
//	    Service spread the requests over N pods) or the timeout passes; prints each answer once.
//	    With --grep it prints, instead, the lines of the first answer that contain TEXT (for
//	    reading metrics). With --print it prints the body of the first 200 answer.
//	e2e-echo load URL [--rate 200] [--duration 0] [--timeout 2s] [--stats-addr ADDR] [--progress] [--record-starts]
//	    sends GETs to URL open-loop at a constant rate (each on schedule, whether or not earlier
//	    ones answered) for --duration (0: until SIGTERM or SIGINT), then prints one JSON summary:
//	    requests sent, successes, failures by kind (status, connect, reset, timeout, other) and,
//	    per serving pod (X-Echo-Pod), its answers and the first and last time it answered. With
//	    --stats-addr it serves the summary so far as JSON at /stats; with --progress it prints a
//	    line to stderr every second. With --record-starts it keeps, per serving pod, the send time
//	    of every request the pod answered, served as JSON at /starts on --stats-addr (so a test
//	    can tell which pod answered the requests sent after a given moment).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lightmesh/lightmesh/internal/origdst"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-echo serve|origdst-serve|get|load ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "origdst-serve":
		err = origdstServe(os.Args[2:])
	case "get":
		err = get(os.Args[2:], os.Stdout)
	case "load":
		err = load(os.Args[2:], os.Stdout, os.Stderr)
	default:
		err = fmt.Errorf("unknown mode %q: use serve, origdst-serve, get or load", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-echo:", err)
		os.Exit(1)
	}
}

// podHeader names the pod that answered, in serve's answers.
const podHeader = "X-Echo-Pod"

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "address to listen on")
	drain := fs.Duration("drain", 0, "on SIGTERM, keep serving this long before stopping")
	quiet := fs.Bool("quiet", false, "do not log every request")
	failEvery := fs.Int64("fail-every", 0, "answer every Nth request with 500 (0: never)")
	hangEvery := fs.Int64("hang-every", 0, "never answer every Nth request: wait until the client goes away (0: never)")
	resetEvery := fs.Int64("reset-every", 0, "reset the connection (TCP RST) instead of answering every Nth request (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *failEvery < 0 {
		return errors.New("serve: --fail-every must not be negative")
	}
	var served atomic.Int64
	name, err := os.Hostname()
	if err != nil {
		return err
	}
	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, name)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !*quiet {
			log.Printf("request %s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		}
		w.Header().Set(podHeader, name)
		n := served.Add(1)
		if *failEvery > 0 && n%*failEvery == 0 {
			http.Error(w, fmt.Sprintf("%s: request %d fails (--fail-every %d)", name, n, *failEvery), http.StatusInternalServerError)
			return
		}
		if *hangEvery > 0 && n%*hangEvery == 0 {
			<-r.Context().Done() // hangs until the client gives up
			return
		}
		if *resetEvery > 0 && n%*resetEvery == 0 {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // close sends RST
				}
				c.Close()
				return
			}
		}
		fmt.Fprintln(w, name)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		if *drain > 0 {
			draining.Store(true)
			log.Printf("signalled: serving %s more while the endpoint is removed", *drain)
			time.Sleep(*drain) // the drain period itself, not synchronisation
		}
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("serving on %s as %s", *addr, name)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	log.Printf("stopped")
	return nil
}

type origDstKey struct{}

func origdstServe(args []string) error {
	fs := flag.NewFlagSet("origdst-serve", flag.ContinueOnError)
	outbound := fs.String("outbound", "127.0.0.1:4140", "the proxy's outbound address")
	inbound := fs.String("inbound", ":4143", "the proxy's inbound address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	errs := make(chan error, 2)
	for side, addr := range map[string]string{"outbound": *outbound, "inbound": *inbound} {
		srv := &http.Server{
			Addr:              addr,
			ReadHeaderTimeout: 10 * time.Second,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				dst, err := origdst.Get(c.(*net.TCPConn))
				if err != nil {
					return context.WithValue(ctx, origDstKey{}, "error: "+err.Error())
				}
				return context.WithValue(ctx, origDstKey{}, dst.String())
			},
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				dst := r.Context().Value(origDstKey{}).(string)
				log.Printf("%s connection from %s, original destination %s", side, r.RemoteAddr, dst)
				fmt.Fprintf(w, "%s original-destination %s\n", side, dst)
			}),
		}
		log.Printf("listening on %s (%s)", addr, side)
		go func() { errs <- srv.ListenAndServe() }()
	}
	return <-errs
}

func get(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	want := fs.Int("want-distinct", 1, "stop after this many different answers")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	grep := fs.String("grep", "", "print the lines of the first answer that contain this text")
	printBody := fs.Bool("print", false, "print the body of the first answer")
	if len(args) < 1 {
		return errors.New("get needs a URL")
	}
	url := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(*timeout)
	var lastErr error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			time.Sleep(100 * time.Millisecond) // pacing between attempts, not synchronisation
		}
		resp, err := client.Get(url)
		if err != nil {
			lastErr = err
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			lastErr = fmt.Errorf("reading the answer: %w", err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			lastErr = fmt.Errorf("status %d", resp.StatusCode)
			continue
		}
		if *printBody {
			_, err := out.Write(body)
			return err
		}
		if *grep != "" {
			for _, line := range strings.Split(string(body), "\n") {
				if strings.Contains(line, *grep) {
					fmt.Fprintln(out, line)
				}
			}
			return nil
		}
		answer := strings.TrimSpace(string(body))
		if !seen[answer] {
			seen[answer] = true
			fmt.Fprintln(out, "answer:", answer)
		}
		if len(seen) >= *want {
			return nil
		}
	}
	return fmt.Errorf("saw %d different answers from %s within %s, want %d (last error: %w)",
		len(seen), url, *timeout, *want, lastErr)
}
