package healthcheck

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/lightmesh/lightmesh/internal/check"
)

func (c *Checker) serverVersion(ctx context.Context) (*utilversion.Version, error) {
	info, err := c.client.Discovery().ServerVersionWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the server's version: %w", err)
	}
	v, err := utilversion.ParseGeneric(info.GitVersion)
	if err != nil {
		return nil, fmt.Errorf("the server reports version %q: %w", info.GitVersion, err)
	}
	return v, nil
}

func (c *Checker) kubernetesVersion() check.Category {
	minimum := utilversion.MustParseGeneric(MinKubernetesVersion)
	return check.Category{ID: KubernetesVersion, Checks: []check.Check{
		{
			ID:          "server",
			Description: fmt.Sprintf("is running Kubernetes %d.%d or later", minimum.Major(), minimum.Minor()),
			Hint:        fmt.Sprintf("upgrade the cluster to Kubernetes %d.%d or later", minimum.Major(), minimum.Minor()),
			Run: func(ctx context.Context) error {
				v, err := c.serverVersion(ctx)
				if err != nil {
					return err
				}
				if v.LessThan(minimum) {
					return fmt.Errorf("the API server runs Kubernetes %s", v)
				}
				return nil
			},
		},
		{
			ID:          "client-go",
			Description: "the CLI's client-go is within one minor version of the server",
			Hint:        "use a mesh CLI built for this cluster's Kubernetes version",
			Run: func(ctx context.Context) error {
				server, err := c.serverVersion(ctx)
				if err != nil {
					return err
				}
				if c.opts.ClientGoVersion == "" {
					return check.Warnf("the CLI's client-go version is unknown")
				}
				client, err := utilversion.ParseSemantic(c.opts.ClientGoVersion)
				if err != nil {
					return check.Warnf("the CLI's client-go version %q does not parse: %w", c.opts.ClientGoVersion, err)
				}
				// client-go v0.N matches Kubernetes 1.N.
				skew := int(client.Minor()) - int(server.Minor())
				if server.Major() != 1 || skew > 1 || skew < -1 {
					return check.Warnf("client-go %s (Kubernetes 1.%d) against a Kubernetes %d.%d server", c.opts.ClientGoVersion, client.Minor(), server.Major(), server.Minor())
				}
				return nil
			},
		},
	}}
}

func (c *Checker) preInstall() (check.Category, error) {
	ns := c.opts.ControlPlaneNamespace
	rendered, err := c.renderedObjects()
	if err != nil {
		return check.Category{}, err
	}
	checks := []check.Check{{
		ID:          "namespace-free",
		Description: fmt.Sprintf("the control-plane namespace %q is free", ns),
		Hint:        "pick another namespace with --control-plane-namespace (and mesh install --set namespace=...), or uninstall what is there",
		Run: func(ctx context.Context) error {
			_, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err == nil {
				return fmt.Errorf("namespace %q already exists", ns)
			}
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("read namespace %q: %w", ns, err)
		},
	}}
	var seen []string
	for _, o := range objectsOf(rendered) {
		if slices.Contains(seen, o.kind) {
			continue
		}
		seen = append(seen, o.kind)
		checks = append(checks, c.canCreate(o))
	}
	checks = append(checks, c.clockSkew())
	return check.Category{ID: PreInstall, Checks: checks}, nil
}

// canCreate asks the API server, with a SelfSubjectAccessReview, whether the user may create
// objects of o's kind (in o's namespace when it has one).
func (c *Checker) canCreate(o renderedObject) check.Check {
	group, _, _ := strings.Cut(o.apiVersion, "/")
	if !strings.Contains(o.apiVersion, "/") {
		group = ""
	}
	resource := plural(strings.ToLower(o.kind))
	return check.Check{
		ID:          "can-create-" + resource,
		Description: "can create " + plural(o.kind),
		Hint:        "install as a user who may create every object of mesh install, or ask a cluster administrator to install lightmesh",
		Run: func(ctx context.Context) error {
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: o.namespace,
					Verb:      "create",
					Group:     group,
					Resource:  resource,
				},
			}}
			got, err := c.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("ask the API server whether you may create %s: %w", resource, err)
			}
			if !got.Status.Allowed {
				where := ""
				if o.namespace != "" {
					where = fmt.Sprintf(" in namespace %q", o.namespace)
				}
				reason := ""
				if got.Status.Reason != "" {
					reason = ": " + got.Status.Reason
				}
				return fmt.Errorf("you may not create %s%s%s", resource, where, reason)
			}
			return nil
		},
	}
}

// clockSkew compares this machine's clock with each ready node's last heartbeat: the Ready
// condition's lastHeartbeatTime or, when later, the renewal of the node's Lease (kubelets
// renew it every few seconds but refresh an unchanged Ready condition only every few
// minutes).
func (c *Checker) clockSkew() check.Check {
	return check.Check{
		ID:          "clock-skew",
		Description: fmt.Sprintf("the nodes' clocks are within %s of this machine's", shortDuration(MaxClockSkew)),
		Hint:        "synchronise the clocks of the nodes and of this machine (NTP): certificates are checked against them",
		Run: func(ctx context.Context) error {
			nodes, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			now := c.now()
			var problems []string
			for _, node := range nodes.Items {
				heartbeat, ready := readyHeartbeat(node)
				if !ready {
					continue
				}
				lease, err := c.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, node.Name, metav1.GetOptions{})
				if err == nil {
					heartbeat = latest(heartbeat, leaseRenewal(lease))
				}
				skew := now.Sub(heartbeat)
				if skew > MaxClockSkew || skew < -MaxClockSkew {
					problems = append(problems, fmt.Sprintf("node %s last reported at %s, this machine's clock reads %s", node.Name,
						heartbeat.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
				}
			}
			return errList(problems)
		},
	}
}

func readyHeartbeat(node corev1.Node) (time.Time, bool) {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			return cond.LastHeartbeatTime.Time, true
		}
	}
	return time.Time{}, false
}

func leaseRenewal(lease *coordinationv1.Lease) time.Time {
	if lease.Spec.RenewTime == nil {
		return time.Time{}
	}
	return lease.Spec.RenewTime.Time
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// shortDuration writes 5m0s as 5m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// plural is the resource name of a kind, as Kubernetes forms it for regular English nouns
// (every kind install renders is one).
func plural(kind string) string {
	switch {
	case strings.HasSuffix(kind, "s"), strings.HasSuffix(kind, "x"):
		return kind + "es"
	case strings.HasSuffix(kind, "y") && !strings.HasSuffix(kind, "ay") && !strings.HasSuffix(kind, "ey"):
		return kind[:len(kind)-1] + "ies"
	}
	return kind + "s"
}
