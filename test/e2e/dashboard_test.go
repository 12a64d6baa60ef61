//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// dashboardPagesCheck loads the topology, routes, check and tap pages of the dashboard at
// browse (dashboardCheck's headless Chromium, which keeps a screenshot of each; TestDemo runs
// it) with the demo's traffic running, and checks what each shows.
func dashboardPagesCheck(t *testing.T, browse func(page, shot string) string) {
	t.Helper()
	// Topology: order-service calls both user-service versions; the traffic generator calls
	// order-service. The edge lists fill over the stats window, so poll.
	var dom string
	eventually(t, 2*time.Minute, "the topology page to show order-service -> user-service-v1", func() (bool, string) {
		dom = browse("/namespaces/microservices/topology", "dashboard-topology.png")
		return strings.Contains(dom, `<g class="edge secured" data-from="order-service" data-to="user-service-v1">`), dom
	})
	for _, want := range []string{`<svg id="topology"`, `data-from="traffic" data-to="order-service"`, `<g class="node" data-name="user-service-v1">`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the topology page does not show %q:\n%s", want, dom)
		}
	}

	// The workload page of user-service-v1: Service user-service selects it, and the seed's
	// traffic-splitting VirtualService routes that host 90/10; order-service calls it.
	dom = browse("/namespaces/microservices/deployment/user-service-v1", "dashboard-workload-routes.png")
	for _, want := range []string{
		`data-source="VirtualService microservices/user-service"`,
		`<span class="pct">90%</span>`, `<span class="pct">10%</span>`,
		`data-from="order-service" data-to="user-service-v1"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the user-service-v1 page does not show %q:\n%s", want, dom)
		}
	}

	// Checks: the API server answers; every check has a result.
	dom = browse("/check", "dashboard-check.png")
	if !strings.Contains(dom, `data-id="kubernetes-api-reach" data-status="success"`) {
		t.Errorf("the check page does not show kubernetes-api reach as passed:\n%s", dom)
	}
	if n := len(regexp.MustCompile(`<tr class="check `).FindAllString(dom, -1)); n < 5 {
		t.Errorf("the check page shows %d checks, want every category's:\n%s", n, dom)
	}

	// Tap: order-service's live requests stream into the table. Chromium dumps the page once
	// its virtual time budget is spent, which a stream does not hold up: the events that
	// arrived by then are in the table, so try a few times.
	eventually(t, 2*time.Minute, "the tap page to stream a request of order-service", func() (bool, string) {
		dom = browse("/tap?namespace=microservices&resource=deployment/order-service&max=20&duration=8s", "dashboard-tap.png")
		return strings.Contains(dom, `<tr class="event">`) && strings.Contains(dom, "order-service"), dom
	})
}
