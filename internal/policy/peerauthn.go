package policy

import "strings"

// DefaultRootNamespace is lightmesh's control-plane namespace, the mesh root namespace of
// ResolvePeerAuthentication and SelectAuthorizationPolicies unless configured otherwise;
// add Istio's "istio-system" to honour policies written for Istio's default root.
const DefaultRootNamespace = "lightmesh"

// WorkloadPeerAuthentication is the mutual TLS mode of one workload, resolved from every
// PeerAuthentication by ResolvePeerAuthentication. No mode in it is ModeUnset.
type WorkloadPeerAuthentication struct {
	// Mode applies to every port not in PortModes.
	Mode PeerAuthnMode `json:"mode"`
	// PortModes are the modes of the ports the workload's policy names (portLevelMtls).
	PortModes map[uint32]PeerAuthnMode `json:"portModes,omitempty"`
	// Sources are the policies that decided, widest scope first, as "namespace/name".
	Sources []string `json:"sources,omitempty"`
}

// ResolvePeerAuthentication resolves the mode of a workload of namespace with labels, by
// Istio's scopes, narrowest first: the policy of the workload's namespace whose selector
// matches its labels, then the namespace's policy without selector, then the mesh policy (no
// selector, in one of rootNamespaces, such as "lightmesh" or Istio's "istio-system"). A scope
// whose mode is UNSET inherits the wider one; with nothing set the mode is PERMISSIVE. When a
// scope has several policies the oldest wins (then the first by namespace/name).
// portLevelMtls comes from the workload's policy only; a port whose mode is UNSET takes the
// workload's resolved mode.
func ResolvePeerAuthentication(all []PeerAuthentication, rootNamespaces []string, namespace string, labels map[string]string) WorkloadPeerAuthentication {
	var mesh, namespaced, workload *PeerAuthentication
	for i := range all {
		pa := &all[i]
		if pa.Selector == nil && contains(rootNamespaces, pa.Namespace) {
			mesh = older(mesh, pa)
		}
		if pa.Namespace != namespace {
			continue
		}
		switch {
		case pa.Selector == nil && !contains(rootNamespaces, pa.Namespace):
			namespaced = older(namespaced, pa)
		case pa.Selector != nil && SelectorMatches(pa.Selector, labels):
			workload = older(workload, pa)
		}
	}

	out := WorkloadPeerAuthentication{Mode: ModePermissive}
	for _, pa := range []*PeerAuthentication{mesh, namespaced, workload} {
		if pa == nil {
			continue
		}
		out.Sources = append(out.Sources, pa.Namespace+"/"+pa.Name)
		if pa.Mode != ModeUnset && pa.Mode != "" {
			out.Mode = pa.Mode
		}
	}
	if workload != nil && len(workload.PortModes) > 0 {
		out.PortModes = make(map[uint32]PeerAuthnMode, len(workload.PortModes))
		for port, mode := range workload.PortModes {
			if mode == ModeUnset || mode == "" {
				mode = out.Mode
			}
			out.PortModes[port] = mode
		}
	}
	return out
}

// older returns the older of two policies (nil is never older).
func older(current, candidate *PeerAuthentication) *PeerAuthentication {
	if current == nil {
		return candidate
	}
	switch {
	case candidate.CreationTimestamp.Before(current.CreationTimestamp):
		return candidate
	case current.CreationTimestamp.Before(candidate.CreationTimestamp):
		return current
	}
	if strings.Compare(candidate.Namespace+"/"+candidate.Name, current.Namespace+"/"+current.Name) < 0 {
		return candidate
	}
	return current
}

// MTLSMode returns the mode of port (the workload's container port) under peerAuthn.
func MTLSMode(peerAuthn WorkloadPeerAuthentication, port uint32) PeerAuthnMode {
	if mode, ok := peerAuthn.PortModes[port]; ok {
		return mode
	}
	if peerAuthn.Mode == "" || peerAuthn.Mode == ModeUnset {
		return ModePermissive
	}
	return peerAuthn.Mode
}

// AcceptsPlaintext reports whether a connection without mTLS is accepted in mode: in every
// mode but STRICT.
func (m PeerAuthnMode) AcceptsPlaintext() bool { return m != ModeStrict }
