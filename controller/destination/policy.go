package destination

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	destinationv1 "github.com/lightmesh/lightmesh/controller/api/destination/v1"
	meshid "github.com/lightmesh/lightmesh/internal/identity"
	"github.com/lightmesh/lightmesh/internal/policy"
)

// PolicyFormat is the format of the policy messages: the JSON form of internal/policy's
// types.
const PolicyFormat = "lightmesh.policy.v1+json"

// IstioRootNamespace is Istio's default root namespace: its mesh-wide policies apply too.
const IstioRootNamespace = "istio-system"

// PolicySource is the translated policy model (controller/policy.Watcher implements it).
type PolicySource interface {
	// Model returns the current model; it is not modified.
	Model() *policy.Model
	// OnChange registers fn, called (without blocking) after every new model.
	OnChange(fn func())
}

func (s *Service) model() *policy.Model {
	if s.opts.Policy == nil {
		return &policy.Model{}
	}
	if m := s.opts.Policy.Model(); m != nil {
		return m
	}
	return &policy.Model{}
}

// GetOutboundPolicy streams the outbound policy of req's authority.
func (s *Service) GetOutboundPolicy(req *destinationv1.GetDestination, stream destinationv1.Destination_GetOutboundPolicyServer) error {
	log := s.log.With("authority", req.GetPath(), "client", clientIdentity(stream.Context()))
	log.Debug("subscribed to outbound policy")
	err := s.SubscribeOutboundPolicy(stream.Context(), req.GetPath(), stream.Send)
	log.Debug("unsubscribed from outbound policy", "error", err)
	return err
}

// SubscribeOutboundPolicy sends the outbound policy of path with send until ctx ends or
// send fails: the current state first, then each new one (coalesced while send blocks).
func (s *Service) SubscribeOutboundPolicy(ctx context.Context, path string, send func(*destinationv1.OutboundPolicy) error) error {
	a, known, err := parseAuthority(path, s.opts.ClusterDomain)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	host, _, _ := net.SplitHostPort(path)
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	// The policy of a name depends on the model only; that of a cluster IP also on which
	// Service has the IP.
	keys := []depKey{{kind: depPolicy}}
	if known && a.ip != "" {
		keys = append(keys, depKey{kind: depClusterIP, name: a.ip})
	}
	sub := newSubscriber()
	defer s.listen(sub, keys...)()
	var last []byte
	for {
		p := s.outboundPolicy(a, known, host)
		data, err := json.Marshal(p)
		if err != nil {
			return status.Error(codes.Internal, fmt.Sprintf("encode the policy: %v", err))
		}
		if last == nil || !bytes.Equal(data, last) {
			s.updates.WithLabelValues("outbound_policy").Inc()
			if err := send(&destinationv1.OutboundPolicy{Format: PolicyFormat, Policy: data}); err != nil {
				return err
			}
			last = data
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sub.dirty:
		}
	}
}

// outboundPolicy computes the policy of authority a (host as written when it names no
// service of this cluster).
func (s *Service) outboundPolicy(a authority, known bool, host string) *policy.OutboundPolicy {
	fqdn := host
	switch {
	case known && a.ip != "":
		if svc, ok := s.resolver.kube.serviceByIP(a.ip); ok {
			fqdn = svc.Name + "." + svc.Namespace + ".svc." + s.opts.ClusterDomain
		}
	case known:
		fqdn = a.name + "." + a.namespace + ".svc." + s.opts.ClusterDomain
	}
	return OutboundPolicyFor(s.model(), fqdn, a.port)
}

// OutboundPolicyFor picks from model the outbound policy of host:port for sidecars: the route
// table of the mesh gateway and the Destinations of host and of every host its routes reach.
// A wildcard DestinationRule host applies to a host without its own, the longest first, as
// in Istio; it is returned under the concrete host.
func OutboundPolicyFor(model *policy.Model, host string, port uint32) *policy.OutboundPolicy {
	out := &policy.OutboundPolicy{Authority: net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))}
	hosts := []string{host}
	if vh, ok := policy.SelectVirtualHost(model.VirtualHosts, policy.MeshGateway, host, port); ok {
		out.VirtualHost = vh
		for _, r := range vh.Routes {
			for _, d := range r.Destinations {
				if d.Host != "" && !contains(hosts, d.Host) {
					hosts = append(hosts, d.Host)
				}
			}
		}
	}
	for _, h := range hosts {
		if d, ok := destinationFor(model.Destinations, h); ok {
			out.Destinations = append(out.Destinations, d)
		}
	}
	return out
}

func destinationFor(all []policy.Destination, host string) (policy.Destination, bool) {
	best, bestLen := -1, -1
	for i := range all {
		d := &all[i]
		if d.Host == host {
			return *d, true
		}
		if strings.HasPrefix(d.Host, "*") && policy.HostMatches(d.Host, host) && len(d.Host) > bestLen {
			best, bestLen = i, len(d.Host)
		}
	}
	if best < 0 {
		return policy.Destination{}, false
	}
	d := all[best]
	d.Host = host
	return d, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// GetInboundPolicy streams the inbound policy of the caller's own pod.
func (s *Service) GetInboundPolicy(req *destinationv1.GetInboundPolicy, stream destinationv1.Destination_GetInboundPolicyServer) error {
	caller := clientIdentity(stream.Context())
	log := s.log.With("pod", req.GetNamespace()+"/"+req.GetPod(), "client", caller)
	log.Debug("subscribed to inbound policy")
	err := s.SubscribeInboundPolicy(stream.Context(), caller, req.GetNamespace(), req.GetPod(), stream.Send)
	log.Debug("unsubscribed from inbound policy", "error", err)
	return err
}

// SubscribeInboundPolicy sends the inbound policy of pod namespace/name to caller (its
// SPIFFE ID, which must be the pod's ServiceAccount identity) until ctx ends or send
// fails. A pod not (yet) known gets the policy of its namespace for a workload without
// labels, if caller is of that namespace.
func (s *Service) SubscribeInboundPolicy(ctx context.Context, caller, namespace, name string, send func(*destinationv1.InboundPolicy) error) error {
	return s.subscribePod(ctx, caller, namespace, name, "inbound_policy", func(pod *corev1.Pod, found bool) any {
		var labels map[string]string
		if found {
			labels = pod.Labels
		}
		p := InboundPolicyFor(s.model(), []string{s.opts.ControlPlaneNamespace, IstioRootNamespace}, namespace, labels)
		if found {
			p.Probes = probes(pod)
		}
		return p
	}, func(data []byte) error {
		return send(&destinationv1.InboundPolicy{Format: PolicyFormat, Policy: data})
	})
}

// GetGatewayPolicy streams the policy of the gateway pod req names.
func (s *Service) GetGatewayPolicy(req *destinationv1.GetInboundPolicy, stream destinationv1.Destination_GetGatewayPolicyServer) error {
	caller := clientIdentity(stream.Context())
	log := s.log.With("pod", req.GetNamespace()+"/"+req.GetPod(), "client", caller)
	log.Debug("subscribed to gateway policy")
	err := s.SubscribeGatewayPolicy(stream.Context(), caller, req.GetNamespace(), req.GetPod(), stream.Send)
	log.Debug("unsubscribed from gateway policy", "error", err)
	return err
}

// SubscribeGatewayPolicy sends the gateway policy of pod namespace/name (the listeners of
// the Gateways that select its labels and their route tables) to caller, which must be the
// pod's ServiceAccount identity, until ctx ends or send fails. A pod not (yet) known gets an
// empty policy.
//
// The HTTPS listeners carry their certificate and key (read from the Secrets their
// tls.credentialName names, in the pod's namespace) only when caller is the ingress
// gateway's identity (ServiceAccount IngressServiceAccount of the control plane namespace);
// any other gateway pod gets them without, as if the Secrets were missing.
func (s *Service) SubscribeGatewayPolicy(ctx context.Context, caller, namespace, name string, send func(*destinationv1.GatewayPolicy) error) error {
	trusted := s.ingressIdentity(caller, namespace)
	return s.subscribePod(ctx, caller, namespace, name, "gateway_policy", func(pod *corev1.Pod, found bool) any {
		if !found {
			return policy.GatewayPolicy{}
		}
		gp := policy.BuildGatewayPolicy(s.model(), pod.Labels)
		gp.ResolveCredentials(s.credentialLookup(namespace, trusted))
		return gp
	}, func(data []byte) error {
		return send(&destinationv1.GatewayPolicy{Format: PolicyFormat, Policy: data})
	})
}

// IngressServiceAccount is the ServiceAccount of the ingress gateway (mesh install
// --ingress) in the control plane namespace: only a proxy with its identity receives the
// private keys of the Gateways' HTTPS servers.
const IngressServiceAccount = "lightmesh-ingress"

// CredentialSource reads the TLS credentials of Gateway servers; the PolicySource may
// implement it (controller/policy.Watcher does).
type CredentialSource interface {
	// GatewayCredential returns the credential of Secret namespace/name (with the client CA
	// when mutual), or an error that says what is wrong with it.
	GatewayCredential(namespace, name string, mutual bool) (*policy.Credential, error)
}

// ingressIdentity reports whether caller is the ingress gateway's identity, asking for the
// policy of a pod of its own namespace.
func (s *Service) ingressIdentity(caller, namespace string) bool {
	id, err := meshid.ParseSpiffeID(caller)
	cp := s.opts.ControlPlaneNamespace
	if cp == "" {
		cp = DefaultControlPlaneNamespace
	}
	td := s.opts.TrustDomain
	if td == "" {
		td = meshid.DefaultTrustDomain
	}
	return err == nil && id.TrustDomain == td && id.Namespace == cp && id.ServiceAccount == IngressServiceAccount && namespace == cp
}

// credentialLookup returns how the gateway policy of a pod of namespace gets its
// credentials: from the PolicySource's Secrets when trusted, else never.
func (s *Service) credentialLookup(namespace string, trusted bool) policy.CredentialLookup {
	return func(name string, mutual bool) (*policy.Credential, error) {
		if !trusted {
			return nil, fmt.Errorf("credentials are sent only to the ingress gateway's identity (ServiceAccount %s)", IngressServiceAccount)
		}
		src, ok := s.opts.Policy.(CredentialSource)
		if !ok || src == nil {
			return nil, fmt.Errorf("this controller reads no Gateway credentials (run the destination service with --policy)")
		}
		return src.GatewayCredential(namespace, name, mutual)
	}
}

// subscribePod sends the JSON of build's policy for pod namespace/name to caller (checked as
// checkCaller says) with send, the current state first, then each new one, until ctx ends
// or send fails; kind labels the updates metric.
func (s *Service) subscribePod(ctx context.Context, caller, namespace, name, kind string, build func(pod *corev1.Pod, found bool) any, send func([]byte) error) error {
	if namespace == "" || name == "" {
		return status.Error(codes.InvalidArgument, "give the pod's namespace and name")
	}
	id, err := meshid.ParseSpiffeID(caller)
	if err != nil {
		return status.Error(codes.PermissionDenied, "the caller has no workload identity: connect with the pod's proxy certificate")
	}
	sub := newSubscriber()
	defer s.listen(sub, depKey{kind: depPolicy}, depKey{depPod, namespace, name})()
	var last []byte
	for {
		pod, found := s.resolver.kube.pod(namespace, name)
		if err := s.checkCaller(id, namespace, pod, found); err != nil {
			return err
		}
		data, err := json.Marshal(build(pod, found))
		if err != nil {
			return status.Error(codes.Internal, fmt.Sprintf("encode the policy: %v", err))
		}
		if last == nil || !bytes.Equal(data, last) {
			s.updates.WithLabelValues(kind).Inc()
			if err := send(data); err != nil {
				return err
			}
			last = data
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sub.dirty:
		}
	}
}

// checkCaller: the caller must be the pod's ServiceAccount identity (of the namespace, while
// the pod is not known).
func (s *Service) checkCaller(id meshid.SpiffeID, namespace string, pod *corev1.Pod, found bool) error {
	if id.TrustDomain != s.opts.TrustDomain || id.Namespace != namespace {
		return status.Errorf(codes.PermissionDenied, "%s may not read the inbound policy of a pod of namespace %s: only the pod's own proxy may", id, namespace)
	}
	if !found {
		return nil
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if id.ServiceAccount != sa {
		return status.Errorf(codes.PermissionDenied, "%s may not read the inbound policy of pod %s/%s, which runs as ServiceAccount %s: only the pod's own proxy may", id, namespace, pod.Name, sa)
	}
	return nil
}

// InboundPolicyFor picks from model the inbound policy of a workload of namespace with
// labels (rootNamespaces hold the mesh-wide policies).
func InboundPolicyFor(model *policy.Model, rootNamespaces []string, namespace string, labels map[string]string) *policy.InboundPolicy {
	return &policy.InboundPolicy{
		PeerAuthentication:    policy.ResolvePeerAuthentication(model.PeerAuthentications, rootNamespaces, namespace, labels),
		AuthorizationPolicies: policy.SelectAuthorizationPolicies(model.AuthorizationPolicies, rootNamespaces, namespace, labels),
	}
}

// probes returns the httpGet liveness, readiness and startup probes of the pod's
// containers, named ports resolved to numbers.
func probes(pod *corev1.Pod) []policy.Probe {
	var out []policy.Probe
	for _, c := range pod.Spec.Containers {
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p == nil || p.HTTPGet == nil {
				continue
			}
			port, ok := containerPort(c, p.HTTPGet.Port)
			if !ok {
				continue
			}
			path := p.HTTPGet.Path
			if path == "" {
				path = "/"
			}
			probe := policy.Probe{Port: port, Path: path}
			if !containsProbe(out, probe) {
				out = append(out, probe)
			}
		}
	}
	return out
}

func containsProbe(list []policy.Probe, p policy.Probe) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

func containerPort(c corev1.Container, port intstr.IntOrString) (uint32, bool) {
	if port.Type == intstr.Int {
		return uint32(port.IntVal), port.IntVal > 0
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return uint32(p.ContainerPort), p.ContainerPort > 0
		}
	}
	return 0, false
}
