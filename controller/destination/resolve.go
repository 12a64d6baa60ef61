package destination

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/inject"
)

// Metric label keys of endpoints.
const (
	LabelNamespace      = "namespace"
	LabelService        = "service"
	LabelPod            = "pod"
	LabelOwnerKind      = "owner_kind"
	LabelOwnerName      = "owner_name"
	LabelZone           = "zone"
	LabelServiceAccount = "serviceaccount"
)

// authority is a parsed subscription target: a service by name, or a cluster IP.
type authority struct {
	namespace, name string
	ip              string
	port            uint32
}

// parseAuthority reads host:port, where host is name.ns.svc.<clusterDomain>, name.ns.svc,
// name.ns, or an IP. ok=false (with no error) is a well-formed authority that cannot name a
// service of this cluster (an external name): it is reported as unknown.
func parseAuthority(s, clusterDomain string) (a authority, ok bool, err error) {
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		return a, false, fmt.Errorf("authority %q is not host:port: write it as web.shop.svc.%s:80 or 10.96.0.10:80", s, clusterDomain)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return a, false, fmt.Errorf("authority %q: the port must be 1 to 65535", s)
	}
	a.port = uint32(port)
	if ip, err := netip.ParseAddr(host); err == nil {
		a.ip = ip.Unmap().String()
		return a, true, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	host = strings.TrimSuffix(host, "."+clusterDomain)
	host = strings.TrimSuffix(host, ".svc")
	parts := strings.Split(host, ".")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return a, false, nil
	}
	a.name, a.namespace = parts[0], parts[1]
	return a, true, nil
}

// state is what a subscriber knows of its authority: whether the service exists and its
// endpoints by address.
type state struct {
	exists    bool
	note      string
	endpoints map[netip.AddrPort]*destinationv1.WeightedAddr
	// externalName is the name an ExternalName service points to (resolved while
	// subscribed), and namespace the service's.
	externalName, namespace string
}

// resolver computes states from the informers' caches.
type resolver struct {
	kube          *Informers
	controlPlane  string
	trustDomain   string
	clusterDomain string
	external      *externalNames
}

// snapshot computes the current state of a, and the keys it depends on: a change of any of
// them may change it.
func (r *resolver) snapshot(a authority) (state, []depKey) {
	var deps []depKey
	var svc *corev1.Service
	var ok bool
	if a.ip != "" {
		deps = append(deps, depKey{kind: depClusterIP, name: a.ip})
		svc, ok = r.kube.serviceByIP(a.ip)
	} else {
		deps = append(deps, depKey{depService, a.namespace, a.name})
		svc, ok = r.kube.service(a.namespace, a.name)
	}
	if !ok && a.ip != "" {
		st, podDeps := r.podSnapshot(a)
		return st, append(append(deps, depKey{kind: depPodIP, name: a.ip}), podDeps...)
	}
	if !ok {
		return state{}, deps
	}
	deps = append(deps, depKey{depService, svc.Namespace, svc.Name})
	st := state{exists: true, endpoints: map[netip.AddrPort]*destinationv1.WeightedAddr{}}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		st = r.externalSnapshot(svc, a, st)
		if st.externalName != "" {
			deps = append(deps, depKey{kind: depExternal, name: st.externalName})
		}
		return st, deps
	}
	// The service's TCP port named by the authority (a UDP or SCTP port of the same number is
	// another port); a headless service without ports serves the authority's port on its
	// endpoints directly.
	var svcPort *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if uint32(svc.Spec.Ports[i].Port) == a.port && isTCP(svc.Spec.Ports[i].Protocol) {
			svcPort = &svc.Spec.Ports[i]
			break
		}
	}
	if svcPort == nil && len(svc.Spec.Ports) > 0 {
		st.exists = false
		st.note = fmt.Sprintf("service %s/%s has no TCP port %d", svc.Namespace, svc.Name, a.port)
		return st, deps
	}
	opaqueSvc := opaquePorts(svc.Annotations)
	appProtocol := ""
	if svcPort != nil {
		appProtocol = declaredProtocol(*svcPort)
	}
	for _, slice := range r.kube.endpointSlices(svc.Namespace, svc.Name) {
		if slice.AddressType != discoveryv1.AddressTypeIPv4 && slice.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, found := a.port, svcPort == nil
		if svcPort != nil {
			for _, p := range slice.Ports {
				if p.Port != nil && (p.Name == nil && svcPort.Name == "" || p.Name != nil && *p.Name == svcPort.Name) {
					port, found = uint32(*p.Port), true
					break
				}
			}
		}
		if !found {
			continue
		}
		for _, ep := range slice.Endpoints {
			if !usable(ep) {
				continue
			}
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				deps = append(deps, depKey{depPod, ep.TargetRef.Namespace, ep.TargetRef.Name})
			}
			for _, addrText := range ep.Addresses {
				ip, err := netip.ParseAddr(addrText)
				if err != nil {
					continue
				}
				addr := netip.AddrPortFrom(ip.Unmap(), uint16(port))
				wa := r.endpoint(svc, ep, addr, opaqueSvc)
				wa.AppProtocol = appProtocol
				st.endpoints[addr] = wa
			}
		}
	}
	return st, deps
}

// externalSnapshot is the state of an ExternalName service: the addresses its name resolves
// to, at the authority's port, without identity.
func (r *resolver) externalSnapshot(svc *corev1.Service, a authority, st state) state {
	name := strings.TrimSuffix(strings.ToLower(svc.Spec.ExternalName), ".")
	st.externalName, st.namespace = name, svc.Namespace
	if name == "" || r.external == nil {
		st.note = fmt.Sprintf("ExternalName service %s/%s has no external name", svc.Namespace, svc.Name)
		return st
	}
	addrs, resolved, lastErr := r.external.current(name)
	switch {
	case !resolved && lastErr != "":
		st.note = fmt.Sprintf("ExternalName service (%s): cannot resolve it: %s", name, lastErr)
	case !resolved:
		st.note = fmt.Sprintf("ExternalName service (%s): resolving", name)
	case len(addrs) == 0:
		st.note = fmt.Sprintf("ExternalName service (%s): the name has no A or AAAA record", name)
	}
	for _, ip := range addrs {
		addr := netip.AddrPortFrom(ip, uint16(a.port))
		st.endpoints[addr] = &destinationv1.WeightedAddr{
			Addr:         &destinationv1.TcpAddress{Ip: ip.String(), Port: a.port},
			Weight:       1,
			MetricLabels: map[string]string{LabelNamespace: svc.Namespace, LabelService: svc.Name},
		}
	}
	return st
}

// podSnapshot is the state of a pod-IP authority: the pod as the one endpoint, with its
// identity and hints when this control plane meshes it (so direct pod traffic gets mTLS),
// and the protocol declared by the Services that target its port; and the keys it depends
// on besides the pod IP (the Services of the pod's namespace when it reads them).
func (r *resolver) podSnapshot(a authority) (state, []depKey) {
	pod, ok := r.kube.podByIP(a.ip)
	if !ok {
		return state{}, nil
	}
	ip, err := netip.ParseAddr(a.ip)
	if err != nil {
		return state{}, nil
	}
	addr := netip.AddrPortFrom(ip, uint16(a.port))
	wa := &destinationv1.WeightedAddr{
		Addr:         &destinationv1.TcpAddress{Ip: ip.String(), Port: a.port},
		Weight:       1,
		MetricLabels: map[string]string{LabelNamespace: pod.Namespace},
	}
	r.podEndpoint(wa, pod, addr, nil)
	var deps []depKey
	// A port the pod's proxy does not take (podEndpoint) declares nothing: the client detects
	// its protocol itself.
	if intercepted(pod, a.port) {
		wa.AppProtocol = podDeclaredProtocol(r.kube.namespaceServices(pod.Namespace), pod, a.port)
		deps = append(deps, depKey{kind: depNamespaceServices, namespace: pod.Namespace})
	}
	return state{exists: true, endpoints: map[netip.AddrPort]*destinationv1.WeightedAddr{addr: wa}}, deps
}

// podDeclaredProtocol is the protocol declared (declaredProtocol) by the TCP ports of the
// services that select pod and target its port: "" when none declares one, or when they
// declare different ones (no pick between conflicting declarations).
func podDeclaredProtocol(services []*corev1.Service, pod *corev1.Pod, port uint32) string {
	declared := ""
	for _, svc := range services {
		if svc.Namespace != pod.Namespace || svc.Spec.Type == corev1.ServiceTypeExternalName || !selects(svc, pod) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if !isTCP(sp.Protocol) || !targets(sp, pod, port) {
				continue
			}
			switch p := declaredProtocol(sp); {
			case p == "" || p == declared:
			case declared == "":
				declared = p
			default:
				return ""
			}
		}
	}
	return declared
}

// selects: the service has a selector (one without selects nothing: its endpoints are
// managed by hand) and the pod's labels match it.
func selects(svc *corev1.Service, pod *corev1.Pod) bool {
	return len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))
}

// targets reports whether the service port sp reaches pod's port: its numeric targetPort
// (its own port when it has none), or the pod's container port named by its targetPort
// (sidecar init containers included, as Kubernetes resolves it).
func targets(sp corev1.ServicePort, pod *corev1.Pod, port uint32) bool {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for i, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
			for _, c := range cs {
				if i == 1 && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
					continue // an init container that is no sidecar serves nothing
				}
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal && isTCP(cp.Protocol) && uint32(cp.ContainerPort) == port {
						return true
					}
				}
			}
		}
		return false
	case sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal != 0:
		return uint32(sp.TargetPort.IntVal) == port
	default:
		return uint32(sp.Port) == port
	}
}

// isTCP: TCP, the default protocol of service and container ports.
func isTCP(p corev1.Protocol) bool { return p == "" || p == corev1.ProtocolTCP }

// intercepted reports whether the pod's proxy receives inbound connections to port: not its
// own inbound, tap (control) and admin ports, which proxy-init leaves alone, nor the ports of
// config.lightmesh.io/skip-inbound-ports.
func intercepted(pod *corev1.Pod, port uint32) bool {
	if port == inject.InboundPort || port == inject.ControlPort || port == inject.AdminPort {
		return false
	}
	skip, err := inject.ParsePorts(pod.Annotations[inject.ConfigAnnotationPrefix+inject.KeySkipInboundPorts])
	if err != nil {
		return true
	}
	for _, r := range skip {
		if uint32(r.First) <= port && port <= uint32(r.Last) {
			return false
		}
	}
	return true
}

// istioPortProtocols are the protocols Istio reads from a Service port's name,
// <protocol>[-<suffix>] (its "explicit protocol selection").
var istioPortProtocols = []string{"http", "http2", "https", "grpc", "grpc-web", "h2c", "tcp", "tls", "mongo", "mysql", "redis", "udp"}

// declaredProtocol is the protocol a Service port declares, lower case: its appProtocol,
// else the prefix of its name when Istio knows it; "" when it declares none.
func declaredProtocol(p corev1.ServicePort) string {
	if p.AppProtocol != nil && *p.AppProtocol != "" {
		return strings.ToLower(*p.AppProtocol)
	}
	name := strings.ToLower(p.Name)
	for _, proto := range istioPortProtocols {
		if name == proto || strings.HasPrefix(name, proto+"-") {
			// "grpc-web" is both a protocol and grpc with a suffix: the longer match wins.
			if proto == "grpc" && (name == "grpc-web" || strings.HasPrefix(name, "grpc-web-")) {
				return "grpc-web"
			}
			return proto
		}
	}
	return ""
}

// usable: ready (unknown counts as ready) and not terminating.
func usable(ep discoveryv1.Endpoint) bool {
	c := ep.Conditions
	if c.Ready != nil && !*c.Ready {
		return false
	}
	return c.Terminating == nil || !*c.Terminating
}

func (r *resolver) endpoint(svc *corev1.Service, ep discoveryv1.Endpoint, addr netip.AddrPort, opaqueSvc []uint16) *destinationv1.WeightedAddr {
	wa := &destinationv1.WeightedAddr{
		Addr:         &destinationv1.TcpAddress{Ip: addr.Addr().String(), Port: uint32(addr.Port())},
		Weight:       1,
		MetricLabels: map[string]string{LabelNamespace: svc.Namespace, LabelService: svc.Name},
	}
	if ep.Zone != nil {
		wa.MetricLabels[LabelZone] = *ep.Zone
	}
	if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
		return wa
	}
	pod, ok := r.kube.pod(ep.TargetRef.Namespace, ep.TargetRef.Name)
	if !ok {
		return wa
	}
	r.podEndpoint(wa, pod, addr, opaqueSvc)
	return wa
}

// podEndpoint fills wa from the endpoint's pod: its labels, metric labels, and, when this
// control plane meshes it, its identity and protocol hint.
func (r *resolver) podEndpoint(wa *destinationv1.WeightedAddr, pod *corev1.Pod, addr netip.AddrPort, opaqueSvc []uint16) {
	if len(pod.Labels) > 0 {
		wa.Labels = maps.Clone(pod.Labels)
	}
	wa.MetricLabels[LabelPod] = pod.Name
	if kind, name := ownerOf(pod); kind != "" {
		wa.MetricLabels[LabelOwnerKind], wa.MetricLabels[LabelOwnerName] = kind, name
	}
	if !r.meshed(pod) {
		return
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	wa.MetricLabels[LabelServiceAccount] = sa
	if id, err := meshid.NewSpiffeID(r.trustDomain, pod.Namespace, sa); err == nil {
		wa.TlsIdentity = id.String()
	}
	wa.ProtocolHint = destinationv1.ProtocolHint_PROTOCOL_HINT_HTTP2
	if slices.Contains(opaqueSvc, addr.Port()) || slices.Contains(opaquePorts(pod.Annotations), addr.Port()) {
		wa.ProtocolHint = destinationv1.ProtocolHint_PROTOCOL_HINT_OPAQUE
	}
	if !intercepted(pod, uint32(addr.Port())) {
		// The pod's proxy does not take this port (its own ports, skip-inbound-ports): the
		// client reaches it in plain text, as without the mesh, whether it came by a Service
		// or by the pod's IP.
		wa.TlsIdentity, wa.ProtocolHint = "", destinationv1.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED
	}
}

// meshed: the pod runs the injected proxy and belongs to this control plane.
func (r *resolver) meshed(pod *corev1.Pod) bool {
	if pod.Labels[inject.LabelControlPlaneNS] != r.controlPlane {
		return false
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == inject.ProxyContainerName {
				return true
			}
		}
	}
	return false
}

// ownerOf names the pod's workload: a ReplicaSet made by a Deployment is reported as the
// Deployment (the ReplicaSet name without its pod-template-hash suffix).
func ownerOf(pod *corev1.Pod) (kind, name string) {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		if hash := pod.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && hash != "" && strings.HasSuffix(ref.Name, "-"+hash) {
			return "Deployment", strings.TrimSuffix(ref.Name, "-"+hash)
		}
		return ref.Kind, ref.Name
	}
	return "", ""
}

// opaquePorts reads config.lightmesh.io/opaque-ports: ports and ranges, comma-separated.
func opaquePorts(annotations map[string]string) []uint16 {
	v := annotations[inject.ConfigAnnotationPrefix+inject.KeyOpaquePorts]
	if v == "" {
		return nil
	}
	var ports []uint16
	for part := range strings.SplitSeq(v, ",") {
		first, last, isRange := strings.Cut(strings.TrimSpace(part), "-")
		lo, err := strconv.ParseUint(first, 10, 16)
		if err != nil {
			continue
		}
		hi := lo
		if isRange {
			if hi, err = strconv.ParseUint(last, 10, 16); err != nil || hi < lo || hi-lo > 4096 {
				continue
			}
		}
		for p := lo; p <= hi; p++ {
			ports = append(ports, uint16(p))
		}
	}
	return ports
}
