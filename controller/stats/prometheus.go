package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultPrometheusTimeout bounds each query to Prometheus.
const DefaultPrometheusTimeout = 10 * time.Second

// The labels Prometheus puts on every proxy series: the add-on's relabeling (install's
// PrometheusConfig) copies the pod's namespace and name into them. Workloads (deployment, ...)
// are found from the pod, as for the scraped snapshots.
const (
	promNamespaceLabel = "namespace"
	promPodLabel       = "pod"
)

// windowSource tells what each pod did over a window: the in-memory scrapes (store) or the
// answers of Prometheus queries (promWindows).
type windowSource interface {
	window(k podKey, now time.Time, window time.Duration, sl slice) windowStats
	peersSeen(k podKey, now time.Time, window time.Duration, outbound bool) []string
}

// promClient queries the Prometheus HTTP API (GET /api/v1/query).
type promClient struct {
	base    string // the server's URL, without a trailing slash
	http    *http.Client
	timeout time.Duration
}

// promVector is one series of an instant-vector answer.
type promVector struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}

// value is the series' sample value (NaN when it cannot be read).
func (v promVector) value() float64 {
	s, ok := v.Value[1].(string)
	if !ok {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

// query runs an instant query at time at and returns its vector.
func (c *promClient) query(ctx context.Context, promql string, at time.Time) ([]promVector, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	params := url.Values{"query": {promql}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/query?"+params.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w: check --prometheus-url", c.base, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query Prometheus at %s: %w: check --prometheus-url and that Prometheus is reachable from the stats service", c.base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of Prometheus at %s: %w", c.base, err)
	}
	var answer struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("the Prometheus at %s answered %s with no API JSON (%.100q): check that --prometheus-url is the Prometheus server's base URL", c.base, resp.Status, body)
	}
	if answer.Status != "success" {
		return nil, fmt.Errorf("the Prometheus at %s refused query %q: %s: %s", c.base, promql, answer.ErrorType, answer.Error)
	}
	if answer.Data.ResultType != "vector" {
		return nil, fmt.Errorf("the Prometheus at %s answered query %q with a %s, want a vector", c.base, promql, answer.Data.ResultType)
	}
	var vec []promVector
	if err := json.Unmarshal(answer.Data.Result, &vec); err != nil {
		return nil, fmt.Errorf("the Prometheus at %s: read the vector of %q: %w", c.base, promql, err)
	}
	return vec, nil
}

// promRange is a window as a PromQL range ("60s").
func promRange(window time.Duration) string {
	return strconv.Itoa(int(math.Ceil(window.Seconds()))) + "s"
}

// promSelector is a series selector of the given matchers plus the namespace's, when set.
func promSelector(namespace string, matchers ...string) string {
	if namespace != "" {
		matchers = append(matchers, promNamespaceLabel+"="+strconv.Quote(namespace))
	}
	return "{" + strings.Join(matchers, ",") + "}"
}

// PromQueries are the PromQL queries one stat or edges answer runs for the pods of namespace
// ("" for every namespace) over window: inbound and outbound responses by peer identity and
// classification, their latency buckets, open inbound connections, and inbound bytes.
func PromQueries(namespace string, window time.Duration) (responses, latency, tcpOpen, readBytes, writeBytes string) {
	by := "namespace, pod, direction, client_id, server_id"
	r := promRange(window)
	http := promSelector(namespace, `direction=~"inbound|outbound"`)
	tcp := promSelector(namespace, `direction="inbound"`, `peer="src"`)
	responses = "sum by (" + by + ", classification) (increase(response_total" + http + "[" + r + "]))"
	latency = "sum by (" + by + ", le) (increase(response_latency_ms_bucket" + http + "[" + r + "]))"
	tcpOpen = "sum by (namespace, pod) (tcp_open_connections" + tcp + ")"
	readBytes = "sum by (namespace, pod) (increase(tcp_read_bytes_total" + tcp + "[" + r + "]))"
	writeBytes = "sum by (namespace, pod) (increase(tcp_write_bytes_total" + tcp + "[" + r + "]))"
	return
}

// promWindows is what Prometheus said the pods did over one window: each pod's increases as
// a sample (counts instead of cumulative counters).
type promWindows struct {
	seconds float64
	pods    map[podKey]*sample
}

// fetch runs the queries for namespace and window at time at and sorts the answers by pod.
func (c *promClient) fetch(ctx context.Context, namespace string, window time.Duration, at time.Time) (*promWindows, error) {
	queries := [5]string{}
	queries[0], queries[1], queries[2], queries[3], queries[4] = PromQueries(namespace, window)
	var results [5][]promVector
	var errs [5]error
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() { results[i], errs[i] = c.query(ctx, q, at) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	pw := &promWindows{seconds: window.Seconds(), pods: map[podKey]*sample{}}
	pod := func(m map[string]string) *sample {
		k := podKey{m[promNamespaceLabel], m[promPodLabel]}
		if k.namespace == "" || k.name == "" {
			return nil
		}
		s := pw.pods[k]
		if s == nil {
			s = &sample{buckets: map[float64]float64{}, inboundBy: map[string]*traffic{}, outboundBy: map[string]*traffic{}}
			pw.pods[k] = s
		}
		return s
	}
	// peer returns the traffic of the series' peer, nil when it is neither direction.
	peer := func(s *sample, m map[string]string) *traffic {
		switch m["direction"] {
		case "inbound":
			return peerTraffic(s.inboundBy, m["client_id"])
		case "outbound":
			return peerTraffic(s.outboundBy, m["server_id"])
		}
		return nil
	}
	for _, v := range results[0] {
		s, n := pod(v.Metric), v.value()
		if s == nil || math.IsNaN(n) {
			continue
		}
		t := peer(s, v.Metric)
		if t == nil {
			continue
		}
		switch v.Metric["classification"] {
		case "success":
			t.success += n
		case "failure":
			t.failure += n
		}
	}
	for _, v := range results[1] {
		s, n := pod(v.Metric), v.value()
		le, err := strconv.ParseFloat(v.Metric["le"], 64)
		if s == nil || math.IsNaN(n) || err != nil {
			continue
		}
		if t := peer(s, v.Metric); t != nil {
			t.buckets[le] += n
		}
	}
	for _, s := range pw.pods {
		for _, t := range s.inboundBy {
			s.success += t.success
			s.failure += t.failure
			for le, n := range t.buckets {
				s.buckets[le] += n
			}
		}
	}
	for i, field := range []func(*sample) *float64{
		func(s *sample) *float64 { return &s.tcpOpen },
		func(s *sample) *float64 { return &s.readBytes },
		func(s *sample) *float64 { return &s.wrote },
	} {
		for _, v := range results[2+i] {
			if s, n := pod(v.Metric), v.value(); s != nil && !math.IsNaN(n) {
				*field(s) += n
			}
		}
	}
	return pw, nil
}

// window returns pod k's increases over the window Prometheus was asked about (now and
// window are those of the query).
func (pw *promWindows) window(k podKey, _ time.Time, _ time.Duration, sl slice) windowStats {
	w := windowStats{buckets: map[float64]float64{}, sliced: sl != nil}
	s := pw.pods[k]
	if s == nil {
		return w
	}
	t := &traffic{success: s.success, failure: s.failure, buckets: s.buckets}
	if sl != nil {
		if t = sl(s); t == nil {
			t = noTraffic
		}
	}
	w.success, w.failure = t.success, t.failure
	for le, n := range t.buckets {
		w.buckets[le] = n
	}
	w.scraped = true
	w.rps = (w.success + w.failure) / pw.seconds
	w.tcpOpen = s.tcpOpen
	w.readRate = s.readBytes / pw.seconds
	w.writeRate = s.wrote / pw.seconds
	return w
}

// peersSeen returns the peers pod k exchanged responses with in the window.
func (pw *promWindows) peersSeen(k podKey, _ time.Time, _ time.Duration, outbound bool) []string {
	s := pw.pods[k]
	if s == nil {
		return nil
	}
	by := s.inboundBy
	if outbound {
		by = s.outboundBy
	}
	out := make([]string, 0, len(by))
	for p := range by {
		out = append(out, p)
	}
	return out
}
