//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// certOutageControlPlane is the control plane TestControllerDownBeyondCertLifetime installs.
const certOutageControlPlane = "h-certout-cp"

const (
	// certOutageLifetime is the workload certificates' lifetime in the test's control plane:
	// the shortest the identity service accepts. Their NotBefore is certOutageSkew in the past
	// (the default allowance, a minute, must be shorter than the lifetime), so a proxy renews
	// 70 % into those 70 s: 39 s after it got its certificate, which expires 60 s after.
	certOutageLifetime = time.Minute
	certOutageSkew     = 10 * time.Second
	// certOutageRate is the meshed client's constant rate of GETs, requests per second.
	certOutageRate = 20
	// certOutageRecovery bounds the return to service once the controller is available again:
	// the identity client's backoff cap (1 min), the destination client's (30 s), a readiness
	// probe period (10 s), and margin for a busy machine.
	certOutageRecovery = 3 * time.Minute
	// certOutageBudget bounds the whole scenario, from the control plane's installation on.
	certOutageBudget = 12 * time.Minute
)

// Issue 13's "controller down longer than the certificate lifetime", end to end: with
// one-minute workload certificates, a meshed client sending 20 GETs a second to a meshed
// Deployment of two replicas, the controller is scaled to 0 until every proxy's certificate
// has expired. What proxy/README.md documents must happen: each proxy keeps its certificate
// and retries with backoff capped at a minute; once the certificate expires /ready fails, the
// pods turn NotReady and leave the Service's ready endpoints, and meshed requests fail with
// 502 tls-handshake-failed (the peer's expired certificate is refused; nothing falls back to
// plaintext). With the controller back, every proxy gets a new certificate within
// certOutageRecovery and connects to the destination service again, the pods are Ready
// again, requests succeed over mTLS, no pod is restarted or replaced, and within a minute
// both replicas share the traffic again. The test logs a timeline of the outage and the
// recovery (offsets from the outage's start), which RELIABILITY.md quotes.
func TestControllerDownBeyondCertLifetime(t *testing.T) {
	c := localCluster(t)
	mesh := buildMesh(t)
	deadline := time.Now().Add(certOutageBudget)
	// within caps a wait at what is left of the scenario's budget.
	within := func(d time.Duration) time.Duration {
		t.Helper()
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("the scenario used up its %s budget", certOutageBudget)
		}
		return min(d, left)
	}
	tl := &outageTimeline{t: t, start: time.Now()}
	t.Cleanup(tl.summary)

	// The control plane, with one-minute workload certificates (as hack/soak.sh does it).
	cp := certOutageControlPlane
	installOwnControlPlane(t, c, mesh, cp)
	if name := strings.TrimSpace(c.must(t, "-n", cp, "get", "deployment", "lightmesh-controller",
		"-o", "jsonpath={.spec.template.spec.containers[0].name}")); name != "identity" {
		t.Fatalf("the controller's first container is %q, not identity: the --leaf-lifetime patch would miss", name)
	}
	patch := fmt.Sprintf(`[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--leaf-lifetime=%s"},`+
		`{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--clock-skew=%s"}]`, certOutageLifetime, certOutageSkew)
	c.must(t, "-n", cp, "patch", "deployment", "lightmesh-controller", "--type=json", "-p", patch)
	controllerRollout := func(what string) {
		t.Helper()
		if _, err := c.run(t, within(3*time.Minute), "-n", cp, "rollout", "status", "deployment/lightmesh-controller", "--timeout=150s"); err != nil {
			t.Fatalf("%s: the controller did not roll out: %v\n%s", what, err, c.describe(t, cp))
		}
	}
	controllerRollout("with --leaf-lifetime")
	tl.mark(fmt.Sprintf("control plane %s available, workload certificates of %s (NotBefore %s back)", cp, certOutageLifetime, certOutageSkew))

	// The meshed workload: echo x2 behind a Service, and a load client at certOutageRate.
	app := c.namespace(t, "h-certout")
	inject := func(manifest string) string { return injectFor(t, c, mesh, cp, manifest) }
	c.apply(t, app, inject(fmt.Sprintf(destScaleServer, testImage("e2e-echo"))))
	c.must(t, "-n", app, "scale", "deployment/echo", "--replicas=2")
	if _, err := c.run(t, within(3*time.Minute), "-n", app, "rollout", "status", "deployment/echo", "--timeout=150s"); err != nil {
		t.Fatalf("the echo deployment did not roll out: %v\n%s", err, c.describe(t, app))
	}
	c.apply(t, app, inject(fmt.Sprintf(destScaleClient, testImage("e2e-echo"), certOutageRate)))
	if _, err := c.run(t, within(3*time.Minute), "-n", app, "wait", "--for=condition=Ready", "pod/load", "--timeout=150s"); err != nil {
		t.Fatalf("the meshed load client did not become ready: %v\n%s", err, c.describe(t, app))
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The proxies' logs without the one line per failed request or handshake.
		for _, pod := range []string{"load", "-l app=echo"} {
			args := append([]string{"-n", app, "logs"}, strings.Fields(pod)...)
			logs, _ := c.run(t, time.Minute, append(args, "-c", "mesh-proxy", "--prefix", "--tail=-1")...)
			var keep []string
			for _, line := range strings.Split(logs, "\n") {
				if !strings.Contains(line, `msg="request failed"`) && !strings.Contains(line, `msg="mesh TLS handshake failed"`) &&
					!strings.Contains(line, `msg="closing a mesh connection`) {
					keep = append(keep, line)
				}
			}
			t.Logf("the proxy of %s, last lines but failed requests and handshakes:\n%s", pod, strings.Join(keep[max(0, len(keep)-60):], "\n"))
		}
		logs, _ := c.run(t, time.Minute, "-n", cp, "logs", "deployment/lightmesh-controller", "--all-containers", "--prefix", "--tail=15")
		t.Logf("the controller, last lines:\n%s", logs)
	})

	httpc := &http.Client{Timeout: 5 * time.Second}
	clientIP := strings.TrimSpace(c.must(t, "-n", app, "get", "pod", "load", "-o", "jsonpath={.status.podIP}"))
	stats := func() loadStats {
		t.Helper()
		return readLoadStats(t, httpc, clientIP)
	}
	// window returns the counters at least d after from.
	window := func(from loadStats, d time.Duration) loadStats {
		t.Helper()
		var s loadStats
		eventually(t, within(d+30*time.Second), fmt.Sprintf("%s of load", d), func() (bool, string) {
			s = stats()
			return s.Now.Sub(from.Now) >= d, fmt.Sprintf("%s so far", s.Now.Sub(from.Now))
		})
		return s
	}

	// Before the outage: both replicas answer over mTLS, every proxy holds a one-minute
	// certificate, and nothing fails.
	before, err := c.podRestartSnapshots(t, app)
	if err != nil {
		t.Fatal(err)
	}
	echoPods := readyPods(t, c, app)
	if len(before) != 3 || len(echoPods) != 2 {
		t.Fatalf("want the load pod and 2 ready echo pods, have %d pods, ready echo pods %v\n%s", len(before), echoPods, c.describe(t, app))
	}
	var warm loadStats
	eventually(t, within(2*time.Minute), "both echo replicas answering the meshed client without failures", func() (bool, string) {
		from := stats()
		warm = window(from, 3*time.Second)
		got := answering(from, warm)
		return slices.Equal(got, echoPods) && warm.Failed == from.Failed,
			fmt.Sprintf("answering %v, want %v; %d failed in the window", got, echoPods, warm.Failed-from.Failed)
	})
	clientID := "spiffe://cluster.local/ns/" + app + "/sa/default"
	proxies := map[string]string{} // pod name -> IP
	for name, p := range before {
		proxies[name] = p.IP
	}
	views := readProxyAdmins(httpc, proxies)
	for name, v := range views {
		if v.err != nil {
			t.Fatalf("the proxy of %s: %v", name, v.err)
		}
		if left := time.Until(v.expiry); left <= 0 || left > certOutageLifetime+5*time.Second {
			t.Fatalf("the proxy of %s holds a certificate expiring in %s, want within %s (is --leaf-lifetime applied?)", name, left.Round(time.Second), certOutageLifetime)
		}
		if !v.ready {
			t.Fatalf("the proxy of %s is not ready before the outage: %q", name, v.readyBody)
		}
	}
	mtlsBefore := inboundFromClient(views, echoPods, clientID)
	if mtlsBefore.mtls == 0 || mtlsBefore.plain != 0 {
		t.Fatalf("the echo proxies counted %v inbound responses from the load client over mTLS and %v without, want some and none", mtlsBefore.mtls, mtlsBefore.plain)
	}
	if n := sumLabelledSamples(views["load"].metrics, "response_total", `direction="outbound"`, `tls="true"`); n == 0 {
		t.Fatalf("the load client's proxy counted no outbound mTLS responses")
	}
	tl.mark(fmt.Sprintf("mTLS traffic flowing: %d requests answered by %v, %0.f inbound mTLS responses from %s", warm.OK, echoPods, mtlsBefore.mtls, clientID))

	// The outage.
	base := stats()
	c.must(t, "-n", cp, "scale", "deployment/lightmesh-controller", "--replicas=0")
	tl.zero = time.Now()
	tl.mark("OUTAGE START: controller scaled to 0")
	eventually(t, within(time.Minute), "the controller's pods gone", func() (bool, string) {
		out, err := c.run(t, 20*time.Second, "-n", cp, "get", "pods", "-o", "name")
		return err == nil && strings.TrimSpace(out) == "", out
	})
	tl.mark("controller pods gone")
	views = readProxyAdmins(httpc, proxies)
	lastExpiry := map[string]time.Time{}
	var latest time.Time
	for name, v := range views {
		if v.err != nil {
			t.Fatalf("the proxy of %s: %v", name, v.err)
		}
		lastExpiry[name] = v.expiry
		latest = laterOf(latest, v.expiry)
		tl.at(v.expiry, fmt.Sprintf("certificate of %s expires (last one issued before the outage)", name))
	}

	// Until every certificate has expired and the consequences show: /ready fails, the pods
	// turn NotReady (readiness probe every 10 s, 3 failures), the Service has no ready endpoint.
	notReady, podsDown := map[string]bool{}, map[string]bool{}
	endpointsEmpty := false
	eventually(t, within(time.Until(latest)+90*time.Second), "every certificate expired, every proxy and pod not ready, no ready endpoint of echo", func() (bool, string) {
		var pending []string
		now := time.Now()
		for name, v := range readProxyAdmins(httpc, proxies) {
			switch {
			case v.err != nil:
				pending = append(pending, name+": "+v.err.Error())
				continue
			case !v.expiry.Equal(lastExpiry[name]):
				t.Fatalf("the proxy of %s changed certificates (expiry %s, was %s) while the controller was down", name, v.expiry, lastExpiry[name])
			}
			if !now.After(v.expiry) {
				pending = append(pending, fmt.Sprintf("%s certificate valid for %s", name, v.expiry.Sub(now).Round(time.Second)))
			}
			if !v.ready && !notReady[name] {
				notReady[name] = true
				tl.mark(fmt.Sprintf("/ready of %s fails: %q", name, v.readyBody))
				if now.Before(v.expiry) {
					t.Errorf("the proxy of %s stopped being ready %s before its certificate expired: %q", name, v.expiry.Sub(now).Round(time.Millisecond), v.readyBody)
				}
				if !strings.Contains(v.readyBody, "certificate expired") {
					t.Errorf("the proxy of %s does not say why it is not ready: %q", name, v.readyBody)
				}
			}
			if !notReady[name] {
				pending = append(pending, fmt.Sprintf("%s /ready %q (expiry in %s)", name, v.readyBody, time.Until(v.expiry).Round(time.Second)))
			}
		}
		pods, err := c.podRestartSnapshots(t, app)
		if err != nil {
			return false, err.Error()
		}
		for name, p := range pods {
			if !p.Ready && !podsDown[name] {
				podsDown[name] = true
				tl.mark(fmt.Sprintf("pod %s NotReady", name))
			}
			if !podsDown[name] {
				pending = append(pending, "pod "+name+" still Ready")
			}
		}
		n, err := c.readyEndpointCount(t, app, "echo")
		if err != nil {
			return false, err.Error()
		}
		if n == 0 && !endpointsEmpty {
			endpointsEmpty = true
			tl.mark("Service echo has no ready endpoint")
		}
		if n != 0 {
			pending = append(pending, fmt.Sprintf("echo has %d ready endpoints", n))
		}
		return len(pending) == 0, strings.Join(pending, "; ")
	})

	// Meshed requests now fail, as the proxy answers a refused handshake: 502
	// tls-handshake-failed; nothing reaches the echo replicas, over mTLS or in plaintext.
	failFrom := stats()
	mtlsFailFrom := inboundFromClient(readProxyAdmins(httpc, proxies), echoPods, clientID)
	failTo := window(failFrom, 10*time.Second)
	after := readProxyAdmins(httpc, proxies)
	mtlsDuring := inboundFromClient(after, echoPods, clientID)
	if n := failTo.OK - failFrom.OK; n != 0 {
		t.Errorf("%d of %d requests succeeded with every certificate expired, want none", n, failTo.Sent-failFrom.Sent)
	}
	if n := failTo.Failed - failFrom.Failed; n < certOutageRate*10/2 {
		t.Errorf("%d requests failed in 10 s with every certificate expired, want about %d", n, certOutageRate*10)
	}
	if d := failTo.Failures["status"] - failFrom.Failures["status"]; d != failTo.Failed-failFrom.Failed {
		t.Errorf("of %d failures with every certificate expired, %d were HTTP answers; all should be the proxy's 502 (failures by kind: %v)",
			failTo.Failed-failFrom.Failed, d, failTo.Failures)
	}
	reasons := map[string]int{}
	for _, f := range failTo.RecentFailures {
		if f.At.After(failFrom.Now) {
			reasons[f.Error]++
		}
	}
	for reason := range reasons {
		if reason != "status 502 tls-handshake-failed" {
			t.Errorf("with every certificate expired the load client got %q, want only \"status 502 tls-handshake-failed\" (all: %v)", reason, reasons)
		}
	}
	if mtlsDuring.mtls != mtlsFailFrom.mtls {
		t.Errorf("the echo proxies answered %v more mTLS requests from the load client with every certificate expired, want none", mtlsDuring.mtls-mtlsFailFrom.mtls)
	}
	if mtlsDuring.plain != 0 {
		t.Errorf("the echo proxies answered %v requests from the load client without mTLS: the client fell back to plaintext", mtlsDuring.plain)
	}
	// Peers refuse the expired certificates: the echo proxies count failed inbound handshakes,
	// the client's proxy failed outbound ones.
	for name, v := range after {
		dir := "inbound"
		if name == "load" {
			dir = "outbound"
		}
		was := sumLabelledSamples(views[name].metrics, "tls_handshake_errors_total", `direction="`+dir+`"`)
		if now := sumLabelledSamples(v.metrics, "tls_handshake_errors_total", `direction="`+dir+`"`); now <= was {
			t.Errorf("the proxy of %s counted no failed %s mesh TLS handshake with every certificate expired (tls_handshake_errors_total %v, %v at the outage's start)", name, dir, now, was)
		}
	}
	var lastOK time.Time
	for _, p := range failTo.Pods {
		lastOK = laterOf(lastOK, p.Last)
	}
	tl.at(lastOK, "last successful request before the failures")
	if first := firstFailureAfter(failTo, base); !first.IsZero() {
		tl.at(first, "first failed request (to the second)")
	}
	tl.mark(fmt.Sprintf("requests failing: %d of %d in %s, answers %v; handshake errors counted by the proxies: %s",
		failTo.Failed-failFrom.Failed, failTo.Sent-failFrom.Sent, failTo.Now.Sub(failFrom.Now).Round(time.Millisecond), reasons, handshakeErrorCounts(after)))

	// The controller returns: every proxy renews, without a restart.
	c.must(t, "-n", cp, "scale", "deployment/lightmesh-controller", "--replicas=1")
	tl.mark("controller scaled to 1")
	controllerRollout("back from 0")
	back := time.Now()
	tl.mark("CONTROLLER BACK: available")
	okAtBack := stats().OK
	renewed, readyAgain, podsUp, resubscribed := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	endpointsBack, served := false, false
	eventually(t, within(certOutageRecovery), "every proxy renewed, ready and connected to destination, every pod Ready, 2 ready endpoints, requests answered", func() (bool, string) {
		var pending []string
		now := time.Now()
		for name, v := range readProxyAdmins(httpc, proxies) {
			if v.err != nil {
				pending = append(pending, name+": "+v.err.Error())
				continue
			}
			if v.expiry.After(lastExpiry[name]) && v.expiry.After(now) && !renewed[name] {
				renewed[name] = true
				tl.mark(fmt.Sprintf("%s renewed (%s after the controller was back): new certificate until %s",
					name, now.Sub(back).Round(time.Second), v.expiry.UTC().Format("15:04:05")))
			}
			if v.ready && !readyAgain[name] {
				readyAgain[name] = true
				tl.mark(fmt.Sprintf("/ready of %s answers 200", name))
			}
			if conn, ok := unlabelledSample(v.metrics, "destination_connected"); ok && conn == 1 && !resubscribed[name] {
				resubscribed[name] = true
				tl.mark(fmt.Sprintf("%s connected to the destination service again (%s after the controller was back)", name, now.Sub(back).Round(time.Second)))
			}
			if !renewed[name] || !readyAgain[name] || !resubscribed[name] {
				pending = append(pending, fmt.Sprintf("%s expiry %s, /ready %q", name, v.expiry.UTC().Format("15:04:05"), v.readyBody))
			}
		}
		pods, err := c.podRestartSnapshots(t, app)
		if err != nil {
			return false, err.Error()
		}
		for name, p := range pods {
			if p.Ready && !podsUp[name] {
				podsUp[name] = true
				tl.mark(fmt.Sprintf("pod %s Ready", name))
			}
			if !podsUp[name] {
				pending = append(pending, "pod "+name+" NotReady")
			}
		}
		n, err := c.readyEndpointCount(t, app, "echo")
		if err != nil {
			return false, err.Error()
		}
		if n == 2 && !endpointsBack {
			endpointsBack = true
			tl.mark("Service echo has 2 ready endpoints")
		}
		if n != 2 {
			pending = append(pending, fmt.Sprintf("echo has %d ready endpoints", n))
		}
		if s := stats(); s.OK > okAtBack && !served {
			served = true
			tl.mark("first successful request after the outage")
		}
		if !served {
			pending = append(pending, "no request answered yet")
		}
		return len(pending) == 0, strings.Join(pending, "; ")
	})

	// After the recovery: requests are answered over mTLS, nothing fails.
	var steady, steadyFrom loadStats
	eventually(t, within(time.Minute), "requests answered without failures", func() (bool, string) {
		steadyFrom = stats()
		steady = window(steadyFrom, 5*time.Second)
		return steady.OK > steadyFrom.OK && steady.Failed == steadyFrom.Failed,
			fmt.Sprintf("%d answered; %s", steady.OK-steadyFrom.OK, steady.failuresSince(steadyFrom))
	})
	final := readProxyAdmins(httpc, proxies)
	mtlsAfter := inboundFromClient(final, echoPods, clientID)
	if mtlsAfter.mtls <= mtlsDuring.mtls || mtlsAfter.plain != 0 {
		t.Errorf("after the recovery the echo proxies counted %v inbound mTLS responses from the load client (%v before) and %v without mTLS, want more mTLS and none without",
			mtlsAfter.mtls, mtlsDuring.mtls, mtlsAfter.plain)
	}
	tl.mark(fmt.Sprintf("steady again: %d requests in %s, all answered, by %v", steady.Sent-steadyFrom.Sent,
		steady.Now.Sub(steadyFrom.Now).Round(time.Millisecond), answering(steadyFrom, steady)))

	// No pod restarted or replaced.
	now, err := c.podRestartSnapshots(t, app)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range before {
		q, ok := now[name]
		switch {
		case !ok:
			t.Errorf("pod %s is gone after the outage (pods now: %v)", name, now)
		case q.UID != p.UID:
			t.Errorf("pod %s was replaced during the outage (UID %s, was %s)", name, q.UID, p.UID)
		case !maps.Equal(q.Restarts, p.Restarts):
			t.Errorf("containers of pod %s restarted during the outage: restart counts %v, were %v", name, q.Restarts, p.Restarts)
		}
	}
	if len(now) != len(before) {
		t.Errorf("pods after the outage: %v, want the same %d as before", now, len(before))
	}

	// The proxies kept retrying with backoff capped at a minute, and the client's proxy
	// refused the servers' expired certificates.
	for name := range proxies {
		logs, err := c.run(t, time.Minute, "-n", app, "logs", name, "-c", "mesh-proxy")
		if err != nil {
			t.Errorf("the logs of %s's proxy: %v", name, err)
			continue
		}
		waits := certRetryWaits(logs)
		if len(waits) < 3 {
			t.Errorf("the proxy of %s logged %d failed certificate requests during the outage, want several (retries with backoff)", name, len(waits))
		}
		if longest := slices.Max(append(waits, 0)); longest > time.Minute {
			t.Errorf("the proxy of %s waited %s between attempts, want at most 1m (the backoff cap)", name, longest)
		}
		t.Logf("%s's proxy: %d failed certificate requests, waits %v", name, len(waits), waits)
		if name == "load" && !strings.Contains(logs, "certificate has expired") {
			t.Errorf("the load client's proxy never logged a refused expired certificate (%q); its requests failed for another reason", "certificate has expired")
		}
	}

	// Both replicas, Ready again, share the traffic again: the client's balancer must not
	// hold the failures of the outage against one of them (checked last, so that a failure
	// here leaves the checks above reported).
	balanced := time.Now().Add(within(time.Minute))
	for {
		from := stats()
		to := window(from, 5*time.Second)
		got := answering(from, to)
		if slices.Equal(got, echoPods) {
			tl.mark(fmt.Sprintf("both replicas answering again: %v", got))
			break
		}
		if time.Now().After(balanced) {
			t.Errorf("a minute after the recovery only %v answer the client, want both %v (Ready, in the Service's endpoints): the client's proxy does not send to the other",
				got, echoPods)
			break
		}
	}
}

// outageTimeline records the moments of the scenario and logs them in order when the test ends.
type outageTimeline struct {
	t     *testing.T
	start time.Time
	// zero is the outage's start; offsets are from it once set.
	zero   time.Time
	mu     sync.Mutex
	events []outageEvent
}

type outageEvent struct {
	at   time.Time
	what string
}

// at records what happened at when (which may be past or future: a certificate's expiry).
func (tl *outageTimeline) at(when time.Time, what string) {
	tl.mu.Lock()
	tl.events = append(tl.events, outageEvent{when, what})
	tl.mu.Unlock()
	tl.t.Logf("[%s] %s", tl.offset(when), what)
}

// mark records what happens now.
func (tl *outageTimeline) mark(what string) { tl.at(time.Now(), what) }

func (tl *outageTimeline) offset(when time.Time) string {
	ref, label := tl.start, "start"
	if !tl.zero.IsZero() {
		ref, label = tl.zero, "outage"
	}
	return fmt.Sprintf("%s %s%+7.1fs", when.UTC().Format("15:04:05.0"), label, when.Sub(ref).Seconds())
}

func (tl *outageTimeline) summary() {
	tl.mu.Lock()
	events := slices.Clone(tl.events)
	tl.mu.Unlock()
	slices.SortStableFunc(events, func(a, b outageEvent) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "  %s  %s\n", tl.offset(e.at), e.what)
	}
	tl.t.Logf("timeline:\n%s", b.String())
}

// proxyAdmin is what a proxy's admin port says: its certificate's expiry, /ready, /metrics.
type proxyAdmin struct {
	expiry    time.Time
	ready     bool
	readyBody string
	metrics   string
	err       error
}

// readProxyAdmins reads the admin port (4191) of each pod's proxy, by pod name -> IP.
func readProxyAdmins(httpc *http.Client, ips map[string]string) map[string]proxyAdmin {
	out := make(map[string]proxyAdmin, len(ips))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, ip := range ips {
		wg.Go(func() {
			v := readProxyAdmin(httpc, ip)
			mu.Lock()
			out[name] = v
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func readProxyAdmin(httpc *http.Client, ip string) proxyAdmin {
	var v proxyAdmin
	metrics, err := getText(httpc, "http://"+ip+":4191/metrics")
	if err != nil {
		v.err = err
		return v
	}
	v.metrics = metrics
	exp, ok := unlabelledSample(metrics, "identity_cert_expiration_timestamp_seconds")
	if !ok || exp == 0 {
		v.err = fmt.Errorf("no identity_cert_expiration_timestamp_seconds on %s:4191/metrics", ip)
		return v
	}
	sec, frac := math.Modf(exp)
	v.expiry = time.Unix(int64(sec), int64(frac*1e9))
	resp, err := httpc.Get("http://" + ip + ":4191/ready")
	if err != nil {
		v.err = err
		return v
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		v.err = fmt.Errorf("reading %s:4191/ready: %w", ip, err)
		return v
	}
	v.ready = resp.StatusCode == http.StatusOK
	v.readyBody = strings.TrimSpace(string(body))
	return v
}

// unlabelledSample returns the value of the unlabelled sample name in Prometheus text.
func unlabelledSample(text, name string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// sumLabelledSamples sums the samples of name whose labels contain every one of match.
func sumLabelledSamples(text, name string, match ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

type inboundFromClientCount struct{ mtls, plain float64 }

// inboundFromClient sums the inbound responses the echo pods' proxies gave to requests for the
// Service echo: over mTLS from client, and without mTLS (what a plaintext fallback would
// show; the kubelet's probes name the pod's IP, not echo).
func inboundFromClient(views map[string]proxyAdmin, pods []string, client string) inboundFromClientCount {
	var n inboundFromClientCount
	for _, pod := range pods {
		text := views[pod].metrics
		n.mtls += sumLabelledSamples(text, "response_total", `direction="inbound"`, `tls="true"`, `client_id="`+client+`"`)
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "response_total{") && strings.Contains(line, `direction="inbound"`) &&
				strings.Contains(line, `authority="echo`) && !strings.Contains(line, `tls="true"`) {
				f := strings.Fields(line)
				if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
					n.plain += v
				}
			}
		}
	}
	return n
}

// handshakeErrorCounts describes every proxy's tls_handshake_errors_total, when it has the metric.
func handshakeErrorCounts(views map[string]proxyAdmin) string {
	var parts []string
	for name, v := range views {
		for _, dir := range []string{"inbound", "outbound"} {
			if n := sumLabelledSamples(v.metrics, "tls_handshake_errors_total", `direction="`+dir+`"`); n > 0 {
				parts = append(parts, fmt.Sprintf("%s %s=%.0f", name, dir, n))
			}
		}
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// firstFailureAfter returns the start of the first second with a failure after base.
func firstFailureAfter(s, base loadStats) time.Time {
	var first time.Time
	for sec := range s.FailuresPerSecond {
		at, err := time.Parse(time.RFC3339, sec)
		if err != nil || at.Before(base.Now.Truncate(time.Second)) {
			continue
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// podRestartSnapshot is what the test compares across the outage: a pod's UID and its containers'
// restart counts (the proxy, a native sidecar, is among the init containers).
type podRestartSnapshot struct {
	UID      string
	IP       string
	Ready    bool
	Restarts map[string]int
}

// podRestartSnapshots reads the pods of ns that are not being deleted, by name.
func (c *cluster) podRestartSnapshots(t *testing.T, ns string) (map[string]podRestartSnapshot, error) {
	t.Helper()
	out, err := c.run(t, 30*time.Second, "-n", ns, "get", "pods", "-o", "json")
	if err != nil {
		return nil, err
	}
	type containerStatus struct {
		Name         string `json:"name"`
		RestartCount int    `json:"restartCount"`
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				UID               string  `json:"uid"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Status struct {
				PodIP      string `json:"podIP"`
				Conditions []struct {
					Type   string `json:"type"`
					Status string `json:"status"`
				} `json:"conditions"`
				ContainerStatuses     []containerStatus `json:"containerStatuses"`
				InitContainerStatuses []containerStatus `json:"initContainerStatuses"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("kubectl get pods -o json: %w", err)
	}
	pods := map[string]podRestartSnapshot{}
	for _, item := range list.Items {
		if item.Metadata.DeletionTimestamp != nil {
			continue
		}
		p := podRestartSnapshot{UID: item.Metadata.UID, IP: item.Status.PodIP, Restarts: map[string]int{}}
		for _, cond := range item.Status.Conditions {
			if cond.Type == "Ready" {
				p.Ready = cond.Status == "True"
			}
		}
		for _, s := range append(item.Status.InitContainerStatuses, item.Status.ContainerStatuses...) {
			p.Restarts[s.Name] = s.RestartCount
		}
		pods[item.Metadata.Name] = p
	}
	return pods, nil
}

// readyEndpointCount counts the ready, not terminating endpoints in service's EndpointSlices.
func (c *cluster) readyEndpointCount(t *testing.T, ns, service string) (int, error) {
	t.Helper()
	out, err := c.run(t, 30*time.Second, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name="+service, "-o", "json")
	if err != nil {
		return 0, err
	}
	var list struct {
		Items []struct {
			Endpoints []struct {
				Conditions struct {
					Ready       *bool `json:"ready"`
					Terminating *bool `json:"terminating"`
				} `json:"conditions"`
			} `json:"endpoints"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return 0, fmt.Errorf("kubectl get endpointslices -o json: %w", err)
	}
	n := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if (e.Conditions.Ready == nil || *e.Conditions.Ready) && (e.Conditions.Terminating == nil || !*e.Conditions.Terminating) {
				n++
			}
		}
	}
	return n, nil
}

var certRetryInText = regexp.MustCompile(`retryIn=(\S+)`)
var certRetryInJSON = regexp.MustCompile(`"retryIn":(\d+)`)

// certRetryWaits returns the waits a proxy's log gives after each failed certificate request.
func certRetryWaits(logs string) []time.Duration {
	var waits []time.Duration
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "could not get a certificate from the identity service") {
			continue
		}
		if m := certRetryInText.FindStringSubmatch(line); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				waits = append(waits, d)
			}
		} else if m := certRetryInJSON.FindStringSubmatch(line); m != nil {
			if ns, err := strconv.ParseInt(m[1], 10, 64); err == nil {
				waits = append(waits, time.Duration(ns))
			}
		}
	}
	return waits
}
