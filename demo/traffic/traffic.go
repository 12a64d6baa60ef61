package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The targets, as the summary names them.
const (
	targetOrders = "order-service"
	targetUsers  = "user-service"
)

// options are the generator's flags.
type options struct {
	OrderURL, UserURL string
	RPS               float64
	Duration          time.Duration
	ReportEvery       time.Duration
	Timeout           time.Duration
	Users             int
	MaxInFlight       int
}

func defaultOptions() options {
	return options{
		OrderURL:    "http://order-service.microservices.svc.cluster.local:8080",
		UserURL:     "http://user-service.microservices.svc.cluster.local:8080",
		RPS:         10,
		ReportEvery: 10 * time.Second,
		Timeout:     5 * time.Second,
		Users:       5,
		MaxInFlight: 100,
	}
}

func (o options) validate() error {
	if o.OrderURL == "" && o.UserURL == "" {
		return errors.New("--order-url and --user-url are both empty: give at least one")
	}
	for name, s := range map[string]string{"--order-url": o.OrderURL, "--user-url": o.UserURL} {
		if s == "" {
			continue // that target is off
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s is %q: give an http:// base URL", name, s)
		}
	}
	switch {
	case o.RPS <= 0 || o.RPS > 10000:
		return fmt.Errorf("--rps is %v: give a rate above 0 and at most 10000", o.RPS)
	case o.Duration < 0:
		return fmt.Errorf("--duration is %v: give 0 (forever) or a positive duration", o.Duration)
	case o.ReportEvery <= 0:
		return fmt.Errorf("--report-every is %v: give a positive duration", o.ReportEvery)
	case o.Timeout <= 0:
		return fmt.Errorf("--timeout is %v: give a positive duration", o.Timeout)
	case o.Users < 1:
		return fmt.Errorf("--users is %d: give at least 1", o.Users)
	case o.MaxInFlight < 1:
		return fmt.Errorf("--max-in-flight is %d: give at least 1", o.MaxInFlight)
	}
	return nil
}

// targetCounts are the answers of one target.
type targetCounts struct {
	OK, Fail int
	// Codes counts failures by status ("error": no answer).
	Codes map[string]int
	// Versions counts answers (successes and failures) by the version that gave them.
	Versions map[string]int
}

// summary is a snapshot of the counts.
type summary struct {
	Elapsed time.Duration
	// Sent counts requests started, Dropped those not started because --max-in-flight
	// requests were outstanding.
	Sent, Dropped int
	Targets       map[string]targetCounts
}

func (s summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "elapsed=%s sent=%d dropped=%d", s.Elapsed.Round(time.Second), s.Sent, s.Dropped)
	for _, name := range []string{targetOrders, targetUsers} {
		c := s.Targets[name]
		fmt.Fprintf(&b, " | %s ok=%d fail=%d", name, c.OK, c.Fail)
		if len(c.Codes) > 0 {
			var codes []string
			for _, k := range sortedKeys(c.Codes) {
				codes = append(codes, k+":"+strconv.Itoa(c.Codes[k]))
			}
			fmt.Fprintf(&b, " [%s]", strings.Join(codes, " "))
		}
		for _, k := range sortedKeys(c.Versions) {
			fmt.Fprintf(&b, " %s=%d", k, c.Versions[k])
		}
	}
	return b.String()
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// generator sends the requests and counts their answers.
type generator struct {
	opts   options
	client *http.Client
	start  time.Time

	mu      sync.Mutex
	sent    int
	dropped int
	targets map[string]*targetCounts
	// orders are the ids of recently created orders, for GET /api/orders/{id}.
	orders []string
}

// maxRememberedOrders bounds generator.orders.
const maxRememberedOrders = 100

// run sends opts.RPS requests a second until opts.Duration passes (0: never) or ctx ends,
// waits for the requests in flight, prints the final summary line and returns it. It prints
// a summary line to out every opts.ReportEvery.
func run(ctx context.Context, opts options, out io.Writer) (summary, error) {
	if err := opts.validate(); err != nil {
		return summary{}, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = opts.MaxInFlight
	g := &generator{
		opts:    opts,
		client:  &http.Client{Timeout: opts.Timeout, Transport: transport},
		start:   time.Now(),
		targets: map[string]*targetCounts{},
	}
	defer transport.CloseIdleConnections()

	var deadline <-chan time.Time
	if opts.Duration > 0 {
		timer := time.NewTimer(opts.Duration)
		defer timer.Stop()
		deadline = timer.C
	}
	ticker := time.NewTicker(time.Duration(float64(time.Second) / opts.RPS))
	defer ticker.Stop()
	report := time.NewTicker(opts.ReportEvery)
	defer report.Stop()

	inFlight := make(chan struct{}, opts.MaxInFlight)
	var wg sync.WaitGroup
	for seq := 0; ; {
		select {
		case <-ctx.Done():
		case <-deadline:
		case <-report.C:
			fmt.Fprintln(out, "traffic", g.snapshot())
			continue
		case <-ticker.C:
			select {
			case inFlight <- struct{}{}:
				n := seq
				seq++
				g.mu.Lock()
				g.sent++
				g.mu.Unlock()
				wg.Go(func() {
					defer func() { <-inFlight }()
					g.one(n)
				})
			default:
				g.mu.Lock()
				g.dropped++
				g.mu.Unlock()
			}
			continue
		}
		break
	}
	wg.Wait()
	s := g.snapshot()
	fmt.Fprintln(out, "traffic final", s)
	return s, nil
}

// one sends request number n: POST /api/orders, GET /api/orders/{id} and GET
// /api/users/{id} in turn (a POST while no order is known yet), leaving out a target whose
// URL is empty.
func (g *generator) one(n int) {
	userID := strconv.Itoa(1 + mrand.IntN(g.opts.Users))
	switch {
	case g.opts.OrderURL == "":
		n = 2 // users only
	case g.opts.UserURL == "":
		n %= 2 // orders only
	}
	switch n % 3 {
	case 1:
		if id, ok := g.knownOrder(); ok {
			g.send(targetOrders, http.MethodGet, g.opts.OrderURL, "/api/orders/"+url.PathEscape(id), nil, "x-user-version")
			return
		}
		fallthrough
	case 0:
		body, _ := json.Marshal(map[string]any{"userId": userID, "item": "book", "quantity": 1 + mrand.IntN(3)})
		answer := g.send(targetOrders, http.MethodPost, g.opts.OrderURL, "/api/orders", body, "x-user-version")
		var created struct {
			ID string `json:"id"`
		}
		if answer != nil && json.Unmarshal(answer, &created) == nil && created.ID != "" {
			g.rememberOrder(created.ID)
		}
	default:
		g.send(targetUsers, http.MethodGet, g.opts.UserURL, "/api/users/"+userID, nil, "x-version")
	}
}

// send makes one request, counts its answer under target (its version from versionHeader)
// and returns the body of a successful answer.
func (g *generator) send(target, method, base, path string, body []byte, versionHeader string) []byte {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, strings.TrimRight(base, "/")+path, r)
	if err != nil {
		g.count(target, 0, "")
		return nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "lightmesh-demo-traffic")
	req.Header.Set("x-request-id", requestID())
	resp, err := g.client.Do(req)
	if err != nil {
		g.count(target, 0, "")
		return nil
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	status := resp.StatusCode
	if err != nil {
		status = 0 // the answer broke off: no answer
	}
	g.count(target, status, resp.Header.Get(versionHeader))
	if status < 200 || status > 299 {
		return nil
	}
	return answer
}

// count records one answer; status 0 means none.
func (g *generator) count(target string, status int, version string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.targets[target]
	if c == nil {
		c = &targetCounts{Codes: map[string]int{}, Versions: map[string]int{}}
		g.targets[target] = c
	}
	switch {
	case status >= 200 && status <= 299:
		c.OK++
	case status == 0:
		c.Fail++
		c.Codes["error"]++
	default:
		c.Fail++
		c.Codes[strconv.Itoa(status)]++
	}
	if version != "" {
		c.Versions[version]++
	}
}

func (g *generator) knownOrder() (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.orders) == 0 {
		return "", false
	}
	return g.orders[mrand.IntN(len(g.orders))], true
}

func (g *generator) rememberOrder(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.orders) == maxRememberedOrders {
		g.orders = g.orders[1:]
	}
	g.orders = append(g.orders, id)
}

// snapshot copies the counts.
func (g *generator) snapshot() summary {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := summary{Elapsed: time.Since(g.start), Sent: g.sent, Dropped: g.dropped, Targets: map[string]targetCounts{}}
	for name, c := range g.targets {
		s.Targets[name] = targetCounts{OK: c.OK, Fail: c.Fail, Codes: maps.Clone(c.Codes), Versions: maps.Clone(c.Versions)}
	}
	return s
}

// requestID is a random x-request-id, so one request can be followed through the proxies'
// logs and traces.
func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
