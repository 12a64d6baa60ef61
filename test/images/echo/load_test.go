package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The load generator counts answers per pod and failures by kind.
func TestLoadCountsAnswersAndFailures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			http.Error(w, "nope", http.StatusServiceUnavailable)
		case 1:
			w.Header().Set(podHeader, "pod-a")
		default:
			w.Header().Set(podHeader, "pod-b")
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	s, err := runLoad(ctx, loadOptions{url: srv.URL, rate: 100, timeout: time.Second}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent < 20 || s.Sent > 60 {
		t.Errorf("sent %d requests in 0.5 s at 100/s", s.Sent)
	}
	if s.OK+s.Failed != s.Sent || s.InFlight != 0 {
		t.Errorf("ok %d + failed %d != sent %d (in flight %d)", s.OK, s.Failed, s.Sent, s.InFlight)
	}
	if s.Failures[failStatus] != s.Failed || s.Statuses["503"] != s.Failed || s.Failed == 0 {
		t.Errorf("failures %v statuses %v, want all 503s", s.Failures, s.Statuses)
	}
	var perSecond int64
	for _, n := range s.FailuresPerSecond {
		perSecond += n
	}
	if perSecond != s.Failed {
		t.Errorf("failures per second %v do not add up to %d", s.FailuresPerSecond, s.Failed)
	}
	if s.Pods["pod-a"] == nil || s.Pods["pod-b"] == nil || s.Pods["pod-a"].Answers+s.Pods["pod-b"].Answers != s.OK {
		t.Errorf("pods %v do not add up to %d answers", s.Pods, s.OK)
	}
}

func TestLoadClassifiesConnectErrorsAndTimeouts(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + lis.Addr().String() + "/"
	_ = lis.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer slow.Close()
	for url, want := range map[string]string{closed: failConnect, slow.URL: failTimeout} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		s, err := runLoad(ctx, loadOptions{url: url, rate: 50, timeout: 200 * time.Millisecond}, io.Discard)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if s.Failed == 0 || s.Failures[want] != s.Failed {
			t.Errorf("%s: failures %v, want all %s; samples %v", url, s.Failures, want, s.RecentFailures)
		}
	}
	if got := classify(syscall.ECONNRESET); got != failReset {
		t.Errorf("ECONNRESET is %s", got)
	}
}

// With --record-starts the recorder keeps, per pod, when each answered request was sent (not
// when its answer came), and /starts serves them: a test can tell which pod answered the
// requests sent after a moment.
func TestLoadRecordsStartsPerPod(t *testing.T) {
	const delay = 200 * time.Millisecond // every answer takes this long
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(delay) // the server's answer time, not synchronisation
		switch k := n.Add(1); {
		case k == 2:
			http.Error(w, "nope", http.StatusServiceUnavailable) // a failure: no start recorded
		case k <= 3:
			w.Header().Set(podHeader, "pod-a")
		default:
			w.Header().Set(podHeader, "pod-b")
		}
	}))
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	rec := newLoadRecorder(srv.URL, 1, start)
	rec.starts = map[string][]int64{}
	var sent []time.Time // when each request was fired, in order
	for range 6 {
		sent = append(sent, time.Now())
		fire(client, srv.URL, rec)
	}
	end := time.Now()

	stats := httptest.NewServer(statsHandler(rec, true))
	defer stats.Close()
	resp, err := http.Get(stats.URL + "/starts")
	if err != nil {
		t.Fatal(err)
	}
	var got StartsSummary
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Start.Equal(start) || got.Now.Before(end) {
		t.Errorf("start %s now %s, want %s and after %s", got.Start, got.Now, start, end)
	}
	want := map[string][]int{"pod-a": {0, 2}, "pod-b": {3, 4, 5}} // request 1 failed
	if len(got.Pods) != 2 || len(got.Pods["pod-a"]) != 2 || len(got.Pods["pod-b"]) != 3 {
		t.Fatalf("starts %v, want 2 of pod-a (one failed) and 3 of pod-b", got.Pods)
	}
	for pod, idx := range want {
		for k, i := range idx {
			at := got.Start.Add(time.Duration(got.Pods[pod][k]) * time.Microsecond)
			// Sent right after sent[i], well before its answer came (delay later).
			if at.Before(sent[i].Add(-time.Millisecond)) || at.After(sent[i].Add(delay/2)) {
				t.Errorf("%s's request %d recorded as sent at %s, want within %s of %s (its answer came %s later)",
					pod, i, at.Format("15:04:05.000"), delay/2, sent[i].Format("15:04:05.000"), delay)
			}
		}
	}
	// The summary is still served at every other path.
	var s LoadSummary
	resp, err = http.Get(stats.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if err != nil || s.OK != 5 || s.Failed != 1 {
		t.Errorf("/stats: ok %d failed %d (%v), want 5 and 1", s.OK, s.Failed, err)
	}
}

// Without --record-starts nothing is kept and /starts says how to get them.
func TestLoadStartsNeedTheFlag(t *testing.T) {
	rec := newLoadRecorder("http://x/", 1, time.Now())
	rec.success("pod-a", time.Now(), time.Millisecond)
	if rec.starts != nil {
		t.Errorf("starts kept without --record-starts: %v", rec.starts)
	}
	stats := httptest.NewServer(statsHandler(rec, false))
	defer stats.Close()
	resp, err := http.Get(stats.URL + "/starts")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "--record-starts") {
		t.Errorf("/starts without the flag: %s %q, want 404 naming --record-starts", resp.Status, body)
	}
	if o, err := parseLoadFlags([]string{"http://x/", "--stats-addr", ":9000", "--record-starts"}); err != nil || !o.recordStarts {
		t.Errorf("--record-starts parsed as %v (%v)", o.recordStarts, err)
	}
	if _, err := parseLoadFlags([]string{"http://x/", "--record-starts"}); err == nil || !strings.Contains(err.Error(), "--stats-addr") {
		t.Errorf("--record-starts without --stats-addr: %v, want an error naming --stats-addr", err)
	}
}
