package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// loadSpec is one open-loop run of the load generator.
type loadSpec struct {
	// Target is the address connections go to (ip:port).
	Target string `json:"target"`
	// Host is the request's Host header (the server's address: the mesh routes on it).
	Host string `json:"host"`
	// Rate is the constant offered rate, requests per second.
	Rate float64 `json:"rate"`
	// Conns is the number of keep-alive HTTP/1.1 connections; a request waits for a free one.
	Conns int `json:"conns"`
	// Duration is how long requests are scheduled.
	Duration time.Duration `json:"duration"`
	// Drain is how long requests still queued or in flight get after Duration; the rest are
	// counted unfinished, with the time they had waited as their (lower-bound) latency.
	Drain time.Duration `json:"drain"`
	// Body is the request body size; the server answers with the same size.
	Body int `json:"body"`
	// WarmupTimeout bounds each warm-up request; zero means 10 s.
	WarmupTimeout time.Duration `json:"warmup_timeout,omitempty"`
}

// loadResult is what the load generator measured. Latencies are from each request's
// intended send time (start + i/rate), so a slow system cannot slow the generator down and
// hide its own slowness (no coordinated omission). Lateness is the generator's own delay in
// waking up for a request, reported apart.
type loadResult struct {
	Offered    int     `json:"offered"`
	Completed  int     `json:"completed"`
	Errors     int     `json:"errors"`
	Unfinished int     `json:"unfinished"`
	FirstError string  `json:"first_error,omitempty"`
	Elapsed    float64 `json:"elapsed_s"`
	// Latency percentiles in microseconds, over completed and unfinished requests.
	Latency percentiles `json:"latency_us"`
	// Lateness percentiles of the scheduler, in microseconds.
	Lateness percentiles `json:"lateness_us"`
}

// Achieved is the completed requests per second.
func (r loadResult) Achieved() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Elapsed
}

// percentiles of a sample, in microseconds.
type percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	N    int     `json:"n"`
}

// summarize sorts samples (nanoseconds) and returns their percentiles (nearest rank).
func summarize(samples []time.Duration) percentiles {
	if len(samples) == 0 {
		return percentiles{}
	}
	slices.Sort(samples)
	rank := func(q float64) float64 {
		i := int(q*float64(len(samples))+0.999999) - 1
		i = max(0, min(i, len(samples)-1))
		return float64(samples[i]) / 1e3
	}
	return percentiles{
		P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), P999: rank(0.999),
		Max: float64(samples[len(samples)-1]) / 1e3, N: len(samples),
	}
}

// requestBytes is one HTTP/1.1 POST with a body of size bytes.
func requestBytes(host string, size int) []byte {
	head := "POST /echo HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	b := make([]byte, len(head)+size)
	copy(b, head)
	for i := len(head); i < len(b); i++ {
		b[i] = 'x'
	}
	return b
}

// loadConn is one keep-alive connection of the generator.
type loadConn struct {
	target string
	req    []byte
	conn   net.Conn
	br     *bufio.Reader
}

// do sends one request and reads the whole response; deadline bounds both.
func (c *loadConn) do(deadline time.Time) error {
	if c.conn == nil {
		d := net.Dialer{Deadline: deadline}
		conn, err := d.Dial("tcp", c.target)
		if err != nil {
			return err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	_ = c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		c.close()
		return err
	}
	if resp.StatusCode != http.StatusOK {
		if resp.Close {
			c.close()
		}
		return fmt.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get("Lightmesh-Proxy-Error"))
	}
	if resp.Close {
		c.close()
	}
	return nil
}

func (c *loadConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// runLoad warms every connection up (two requests each), calls started, then offers
// spec.Rate requests per second for spec.Duration and waits for them at most spec.Drain
// longer.
func runLoad(spec loadSpec, started func()) (loadResult, error) {
	if spec.Rate <= 0 || spec.Conns <= 0 || spec.Duration <= 0 {
		return loadResult{}, fmt.Errorf("load: rate, conns and duration must be positive, got %v, %d, %s", spec.Rate, spec.Conns, spec.Duration)
	}
	req := requestBytes(spec.Host, spec.Body)
	warmup := spec.WarmupTimeout
	if warmup <= 0 {
		warmup = 10 * time.Second
	}
	conns := make([]*loadConn, spec.Conns)
	for i := range conns {
		conns[i] = &loadConn{target: spec.Target, req: req}
		for range 2 {
			if err := conns[i].do(time.Now().Add(warmup)); err != nil {
				return loadResult{}, fmt.Errorf("warm-up request on connection %d to %s: %w", i, spec.Target, err)
			}
		}
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	if started != nil {
		started()
	}

	interval := time.Duration(float64(time.Second) / spec.Rate)
	total := int(spec.Rate * spec.Duration.Seconds())
	queue := make(chan time.Time, total+1)
	start := time.Now().Add(time.Millisecond)
	stop := start.Add(spec.Duration + spec.Drain)

	type workerResult struct {
		lat        []time.Duration
		errors     int
		unfinished int
		firstErr   error
	}
	results := make([]workerResult, spec.Conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			r.lat = make([]time.Duration, 0, total/spec.Conns+16)
			for intended := range queue {
				if !time.Now().Before(stop) {
					r.unfinished++
					r.lat = append(r.lat, stop.Sub(intended))
					continue
				}
				err := conns[w].do(stop)
				done := time.Now()
				var ne net.Error
				switch {
				case err == nil:
					r.lat = append(r.lat, done.Sub(intended))
				case errors.As(err, &ne) && ne.Timeout():
					r.unfinished++
					r.lat = append(r.lat, stop.Sub(intended))
				default:
					r.errors++
					if r.firstErr == nil {
						r.firstErr = err
					}
				}
			}
		}()
	}

	lateness := schedule(start, interval, total, queue)
	wg.Wait()
	elapsed := time.Since(start)

	res := loadResult{Offered: total, Elapsed: elapsed.Seconds()}
	var all []time.Duration
	for _, r := range results {
		res.Errors += r.errors
		res.Unfinished += r.unfinished
		all = append(all, r.lat...)
		if r.firstErr != nil && res.FirstError == "" {
			res.FirstError = r.firstErr.Error()
		}
	}
	res.Completed = total - res.Errors - res.Unfinished
	res.Latency = summarize(all)
	res.Lateness = summarize(lateness)
	return res, nil
}

// schedule puts total intended send times, interval apart from start, into queue, each at
// its time, and returns how late it woke up for each. It sleeps with nanosleep on its own
// thread with 1 ns timer slack: time.Sleep rounds short waits up to the millisecond of the
// runtime's poller and would make the generator ~0.5 ms late at p50. The load generator runs
// with GOMAXPROCS=2 so that the connections' goroutines keep a P while this thread sleeps
// (both are still pinned to the same CPU).
func schedule(start time.Time, interval time.Duration, total int, queue chan<- time.Time) []time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// PR_SET_TIMERSLACK applies to the calling thread only; ignore failure (then the
	// default 50 µs slack applies).
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	lateness := make([]time.Duration, 0, total)
	for i := range total {
		intended := start.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			ts := syscall.NsecToTimespec(int64(d))
			for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
			}
		}
		lateness = append(lateness, time.Since(intended))
		queue <- intended
	}
	close(queue)
	return lateness
}

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// holdConns opens n connections, sends one request on each and keeps them open until
// release returns.
func holdConns(target, host string, n, body int, held, release func()) error {
	req := requestBytes(host, body)
	conns := make([]*loadConn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	for i := range conns {
		conns[i] = &loadConn{target: target, req: req}
		if err := conns[i].do(time.Now().Add(10 * time.Second)); err != nil {
			return fmt.Errorf("request on connection %d: %w", i, err)
		}
	}
	held()
	release()
	return nil
}
