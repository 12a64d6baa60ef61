package policy

import (
	"reflect"
	"testing"
	"time"
)

func TestResolvePeerAuthentication(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	roots := []string{"lightmesh", "istio-system"}
	userLabels := map[string]string{"app": "user-service"}
	meshStrict := PeerAuthentication{Namespace: "lightmesh", Name: "default", Mode: ModeStrict}
	istioRootDisable := PeerAuthentication{Namespace: "istio-system", Name: "default", Mode: ModeDisable, CreationTimestamp: t0.Add(time.Hour)}
	nsPermissive := PeerAuthentication{Namespace: "microservices", Name: "default", Mode: ModePermissive}
	nsStrict := PeerAuthentication{Namespace: "microservices", Name: "default", Mode: ModeStrict} // the seed's
	nsUnset := PeerAuthentication{Namespace: "microservices", Name: "unset", Mode: ModeUnset}
	workloadDisable := PeerAuthentication{Namespace: "microservices", Name: "users", Selector: userLabels, Mode: ModeDisable}
	workloadPorts := PeerAuthentication{Namespace: "microservices", Name: "users-ports", Selector: userLabels, Mode: ModeUnset,
		PortModes: map[uint32]PeerAuthnMode{8080: ModeDisable, 9090: ModeUnset, 9091: ModePermissive}}
	otherWorkload := PeerAuthentication{Namespace: "microservices", Name: "orders", Selector: map[string]string{"app": "order-service"}, Mode: ModeDisable}
	otherNamespace := PeerAuthentication{Namespace: "default", Name: "default", Mode: ModeDisable}
	rootSelector := PeerAuthentication{Namespace: "lightmesh", Name: "selected", Selector: userLabels, Mode: ModeDisable}

	cases := []struct {
		name     string
		policies []PeerAuthentication
		port     uint32
		want     PeerAuthnMode
	}{
		{"nothing: permissive", nil, 80, ModePermissive},
		{"mesh strict", []PeerAuthentication{meshStrict}, 80, ModeStrict},
		{"istio-system is a root namespace too", []PeerAuthentication{istioRootDisable}, 80, ModeDisable},
		{"oldest mesh policy wins", []PeerAuthentication{istioRootDisable, {Namespace: "lightmesh", Name: "default", Mode: ModeStrict, CreationTimestamp: t0}}, 80, ModeStrict},
		{"namespace beats mesh", []PeerAuthentication{meshStrict, nsPermissive}, 80, ModePermissive},
		{"seed: namespace strict", []PeerAuthentication{nsStrict}, 80, ModeStrict},
		{"namespace UNSET inherits mesh", []PeerAuthentication{meshStrict, nsUnset}, 80, ModeStrict},
		{"workload beats namespace", []PeerAuthentication{nsStrict, workloadDisable}, 80, ModeDisable},
		{"other workload's policy does not apply", []PeerAuthentication{nsStrict, otherWorkload}, 80, ModeStrict},
		{"other namespace's policy does not apply", []PeerAuthentication{otherNamespace}, 80, ModePermissive},
		{"root namespace policy with selector applies only in the root namespace", []PeerAuthentication{rootSelector}, 80, ModePermissive},
		{"portLevelMtls port", []PeerAuthentication{nsStrict, workloadPorts}, 8080, ModeDisable},
		{"portLevelMtls other port inherits", []PeerAuthentication{nsStrict, workloadPorts}, 80, ModeStrict},
		{"portLevelMtls UNSET port inherits", []PeerAuthentication{nsStrict, workloadPorts}, 9090, ModeStrict},
		{"portLevelMtls permissive", []PeerAuthentication{meshStrict, workloadPorts}, 9091, ModePermissive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resolved := ResolvePeerAuthentication(c.policies, roots, "microservices", userLabels)
			if got := MTLSMode(resolved, c.port); got != c.want {
				t.Errorf("MTLSMode(port %d) = %s, want %s (resolved %+v)", c.port, got, c.want, resolved)
			}
		})
	}

	resolved := ResolvePeerAuthentication([]PeerAuthentication{meshStrict, nsPermissive, workloadDisable}, roots, "microservices", userLabels)
	if want := []string{"lightmesh/default", "microservices/default", "microservices/users"}; !reflect.DeepEqual(resolved.Sources, want) {
		t.Errorf("Sources = %v, want %v", resolved.Sources, want)
	}
	if !ModePermissive.AcceptsPlaintext() || ModeStrict.AcceptsPlaintext() {
		t.Error("AcceptsPlaintext is wrong")
	}
	if got := MTLSMode(WorkloadPeerAuthentication{}, 1); got != ModePermissive {
		t.Errorf("MTLSMode of the zero value = %s, want PERMISSIVE", got)
	}
}
