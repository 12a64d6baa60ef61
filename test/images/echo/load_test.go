package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
