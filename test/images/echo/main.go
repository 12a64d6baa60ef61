// Command e2e-echo is the small program the end-to-end tests run in pods.
//
//	e2e-echo serve [--addr :8080]
//	    answers every HTTP request with the pod's name (its host name) and logs the request.
//	e2e-echo origdst-serve [--outbound 127.0.0.1:4140] [--inbound :4143]
//	    stands where the proxy will: answers HTTP on the proxy's outbound and inbound ports
//	    with the connection's original destination (SO_ORIGINAL_DST), as proxy-init's
//	    iptables rules redirected it: "outbound original-destination 10.244.0.7:8080".
//	e2e-echo get URL [--want-distinct N] [--timeout 60s] [--grep TEXT]
//	    sends GETs to URL, each on a new connection, until N different answers were seen (so a
//	    Service spread the requests over N pods) or the timeout passes; prints each answer once.
//	    With --grep it prints, instead, the lines of the first answer that contain TEXT (for
//	    reading metrics).
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
	"syscall"
	"time"

	"github.com/lightmesh/lightmesh/internal/origdst"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-echo serve|get ...")
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
	default:
		err = fmt.Errorf("unknown mode %q: use serve or get", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-echo:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	name, err := os.Hostname()
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("request %s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintln(w, name)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("serving on %s as %s", *addr, name)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
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
