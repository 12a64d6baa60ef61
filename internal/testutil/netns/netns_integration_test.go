//go:build integration

package netns

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestNamespacesAreLinkedAndDeleted(t *testing.T) {
	Require(t)
	var names []string
	t.Run("make", func(t *testing.T) {
		a, b := New(t, "a"), New(t, "b")
		names = []string{a.Name, b.Name}
		Connect(t, a, b, "eth0")
		a.AddAddress(t, "eth0", "10.77.0.1/24")
		b.AddAddress(t, "eth0", "10.77.0.2/24")
		if route := a.Run(t, "ip", "route", "get", "10.77.0.2"); !strings.Contains(route, "dev eth0") {
			t.Errorf("no route to the other namespace: %s", route)
		}
		if IPv6Available() {
			a.AddAddress(t, "eth0", "fd00:77::1/64")
			b.AddAddress(t, "eth0", "fd00:77::2/64")
			if route := a.Run(t, "ip", "-6", "route", "get", "fd00:77::2"); !strings.Contains(route, "dev eth0") {
				t.Errorf("no IPv6 route to the other namespace: %s", route)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := b.Command(ctx, "ip", "-brief", "address", "show", "eth0").Output()
		if err != nil || !strings.Contains(string(out), "10.77.0.2/24") {
			t.Errorf("Command in %s: %q, %v", b, out, err)
		}
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.Contains(string(out), name) {
			t.Errorf("namespace %s still exists after its test ended", name)
		}
	}
}
