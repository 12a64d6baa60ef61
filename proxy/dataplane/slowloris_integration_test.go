//go:build integration

// Slowloris (issue 13): 5,000 slow connections to the proxy's inbound listener and 5,000
// to its outbound listener, each sending a request line and then one byte of header per
// second, from a separate process (the test binary re-executed), so that the attack's file
// descriptors and goroutines are not the proxy's. The proxy, with its default timeouts, must
// close every one at the header timeout, and other clients' p99 latency under attack must
// stay within twice its idle value. Loopback only, no root; about 20 s:
//
//	go test -tags integration -run TestSlowloris -v ./proxy/dataplane/
package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/proxy/h1"
)

const (
	slowlorisHelperEnv = "LM_SLOWLORIS_HELPER"
	slowlorisConns     = 5000 // per listener
)

func TestMain(m *testing.M) {
	if os.Getenv(slowlorisHelperEnv) != "" {
		os.Exit(slowlorisHelper(os.Args[len(os.Args)-2:]))
	}
	os.Exit(m.Run())
}

// slowlorisReport is what the helper prints when every connection has ended (or its
// deadline passed).
type slowlorisReport struct {
	Opened, DialFailed, ClosedByServer, StillOpen int
	// Lifetimes of the connections the server closed, in seconds: min, median, max.
	MinLife, MedianLife, MaxLife float64
	// BytesSent is the most header bytes any connection got out before it was closed.
	MaxBytesSent int
}

// slowlorisHelper opens slowlorisConns connections to each address, sends a request line
// and a Host field at once, then one header byte per second until the server closes the
// connection. It prints "ready" once every connection is open, then a JSON report.
func slowlorisHelper(addrs []string) int {
	raiseNoFile()
	type result struct {
		life   time.Duration
		closed bool
		sent   int
	}
	var (
		mu      sync.Mutex
		results []result
		failed  atomic.Int64
		wg      sync.WaitGroup
		opened  sync.WaitGroup
		end     = time.Now().Add(90 * time.Second)
	)
	opened.Add(len(addrs) * slowlorisConns)
	for _, addr := range addrs {
		for i := range slowlorisConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Pace the dials: about 1,000 per second per address.
				time.Sleep(time.Duration(i) * time.Millisecond)
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				opened.Done()
				if err != nil {
					failed.Add(1)
					return
				}
				defer c.Close()
				start := time.Now()
				closed := make(chan struct{})
				go func() {
					// The server closes: a read returns EOF or a reset (the proxy never answers
					// a head it did not finish reading, or answers 408 and closes).
					_, _ = io.Copy(io.Discard, c)
					close(closed)
				}()
				head := "GET /slow/" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: slowloris.test\r\n"
				sent := 0
				if _, err := io.WriteString(c, head); err != nil {
					mu.Lock()
					results = append(results, result{life: time.Since(start), closed: true})
					mu.Unlock()
					return
				}
				trickle := "X-Slow-Loris-Header-That-Never-Ends: " + strings.Repeat("a", 4096)
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					select {
					case <-closed:
						mu.Lock()
						results = append(results, result{life: time.Since(start), closed: true, sent: sent})
						mu.Unlock()
						return
					case <-tick.C:
						if time.Now().After(end) {
							mu.Lock()
							results = append(results, result{life: time.Since(start), sent: sent})
							mu.Unlock()
							return
						}
						_ = c.SetWriteDeadline(time.Now().Add(time.Second))
						if _, err := c.Write([]byte{trickle[sent%len(trickle)]}); err == nil {
							sent++
						}
					}
				}
			}()
		}
	}
	opened.Wait()
	fmt.Println("ready")
	wg.Wait()
	rep := slowlorisReport{Opened: len(results), DialFailed: int(failed.Load())}
	var lives []float64
	for _, r := range results {
		if r.closed {
			rep.ClosedByServer++
			lives = append(lives, r.life.Seconds())
		} else {
			rep.StillOpen++
		}
		rep.MaxBytesSent = max(rep.MaxBytesSent, r.sent)
	}
	if len(lives) > 0 {
		slices.Sort(lives)
		rep.MinLife, rep.MedianLife, rep.MaxLife = lives[0], lives[len(lives)/2], lives[len(lives)-1]
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	return 0
}

// raiseNoFile raises the soft limit on open files to the hard limit.
func raiseNoFile() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// latencies sends n requests, each on a new connection, alternately through the proxy's
// outbound and inbound listeners, and returns their durations sorted.
func latencies(t *testing.T, p *Proxy, app string, n int) []time.Duration {
	t.Helper()
	clients := []*http.Client{}
	for _, listener := range []string{p.OutboundAddr().String(), p.InboundAddr().String()} {
		var d net.Dialer
		clients = append(clients, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", listener)
			},
		}})
	}
	out := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		resp, err := clients[i%2].Get("http://" + app + "/fast")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func TestSlowloris(t *testing.T) {
	if got := raiseNoFile(); got < 2*slowlorisConns+2000 {
		t.Fatalf("RLIMIT_NOFILE is %d; the proxy needs %d for %d slow connections per listener: raise the hard limit (ulimit -Hn)", got, 2*slowlorisConns+2000, slowlorisConns)
	}
	app := startApp(t)
	appAddr := netip.MustParseAddrPort(app.addr)
	opts := Options{
		InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0", Logger: quietLogger(),
		OpaquePorts: []uint16{},
		// No iptables here: every accepted connection was meant for the app.
		OrigDst: func(*net.TCPConn) (netip.AddrPort, error) { return appAddr, nil },
	}
	p := startProxy(t, opts)
	headerTimeout := h1.DefaultReadHeaderTimeout

	const samples = 3000
	_ = latencies(t, p, app.addr, 200) // warm up
	idle := latencies(t, p, app.addr, samples)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "-test.run=^$", p.InboundAddr().String(), p.OutboundAddr().String())
	cmd.Env = append(os.Environ(), slowlorisHelperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	attackStart := time.Now()
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the attacker did not get ready: %q %v\n%s", lines.Text(), lines.Err(), stderr.String())
	}
	t.Logf("%d slow connections open after %v", 2*slowlorisConns, time.Since(attackStart).Round(time.Millisecond))
	underAttack := latencies(t, p, app.addr, samples)
	measuredBy := time.Since(attackStart)
	if !lines.Scan() {
		t.Fatalf("no report from the attacker: %v\n%s", lines.Err(), stderr.String())
	}
	var rep slowlorisReport
	if err := json.Unmarshal(lines.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v", lines.Text(), err)
	}
	t.Logf("attacker: %+v", rep)
	pIdle, pAttack := quantile(idle, 0.99), quantile(underAttack, 0.99)
	t.Logf("latency idle p50 %v p99 %v; under attack p50 %v p99 %v (measured within %v of the attack's start)",
		quantile(idle, 0.5), pIdle, quantile(underAttack, 0.5), pAttack, measuredBy.Round(time.Millisecond))

	if rep.DialFailed > 0 || rep.Opened != 2*slowlorisConns {
		t.Errorf("%d dials failed, %d connections opened; want all %d", rep.DialFailed, rep.Opened, 2*slowlorisConns)
	}
	if rep.StillOpen > 0 {
		t.Errorf("%d slow connections were still open after 90 s", rep.StillOpen)
	}
	// Closed at the header timeout: not before, not much after (dials were spread over 5 s).
	if rep.MinLife < headerTimeout.Seconds()-1 || rep.MaxLife > headerTimeout.Seconds()+5 {
		t.Errorf("slow connections lived %.1f-%.1f s; want about the header timeout, %v", rep.MinLife, rep.MaxLife, headerTimeout)
	}
	if measuredBy > headerTimeout {
		t.Logf("warning: the measurement under attack ended %v after the attack began, after the first closures", measuredBy)
	}
	// Other clients: p99 within twice its idle value. Below 2 ms of idle p99, loopback noise
	// on a shared machine dominates, so the idle value is floored at 2 ms.
	bound := 2 * max(pIdle, 2*time.Millisecond)
	if pAttack > bound {
		t.Errorf("p99 under attack %v > %v (twice idle p99 %v)", pAttack, bound, pIdle)
	}
}
