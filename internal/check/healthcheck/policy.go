package healthcheck

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/lightmesh/lightmesh/install"
	"github.com/lightmesh/lightmesh/internal/check"
	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/policy/translate"
)

// Policy is the category of the routing and policy resources lightmesh serves.
const Policy = "policy"

// ControllerName is the controllerName the policy controller writes in HTTPRoute
// status.parents.
const ControllerName = "lightmesh.io/mesh-controller"

// GatewayAPIBundleVersion is the annotation the upstream Gateway API CRDs carry.
const GatewayAPIBundleVersion = "gateway.networking.k8s.io/bundle-version"

// CRDResource is the resource of CustomResourceDefinitions.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// dynamicClient makes (once) the dynamic client the policy checks read CRDs and custom
// resources with.
func (c *Checker) dynamicClient() (dynamic.Interface, error) {
	if c.dynamic != nil {
		return c.dynamic, nil
	}
	if c.opts.NewDynamicClient == nil {
		return nil, fmt.Errorf("no dynamic client")
	}
	d, err := c.opts.NewDynamicClient()
	if err != nil {
		return nil, err
	}
	c.dynamic = d
	return d, nil
}

// crd reads the CRD name; nil when it does not exist.
func (c *Checker) crd(ctx context.Context, name string) (*unstructured.Unstructured, error) {
	d, err := c.dynamicClient()
	if err != nil {
		return nil, err
	}
	crd, err := d.Resource(CRDResource).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CustomResourceDefinition %s: %w", name, err)
	}
	return crd, nil
}

// servedVersions are the versions crd serves.
func servedVersions(crd *unstructured.Unstructured) []string {
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var served []string
	for _, raw := range versions {
		v, _ := raw.(map[string]any)
		if ok, _ := v["served"].(bool); ok {
			name, _ := v["name"].(string)
			served = append(served, name)
		}
	}
	return served
}

func (c *Checker) policy() check.Category {
	const crdHint = "install the CRDs: mesh install --crds | kubectl apply -f -"
	return check.Category{ID: Policy, Checks: []check.Check{
		{
			ID:          "crds",
			Description: "the policy CRDs are installed",
			Hint:        crdHint,
			Run: func(ctx context.Context) error {
				var problems []string
				for _, name := range install.CRDNames() {
					crd, err := c.crd(ctx, name)
					if err != nil {
						return err
					}
					if crd == nil {
						problems = append(problems, fmt.Sprintf("CustomResourceDefinition %s does not exist", name))
					}
				}
				return errList(problems)
			},
		},
		{
			ID:          "gateway-api",
			Description: "the HTTPRoute CRD serves gateway.networking.k8s.io/v1",
			Hint:        "install Gateway API v1.0 or later (or remove it and let mesh install --crds install lightmesh's HTTPRoute CRD)",
			Run: func(ctx context.Context) error {
				crd, err := c.crd(ctx, "httproutes.gateway.networking.k8s.io")
				if err != nil {
					return err
				}
				if crd == nil {
					return fmt.Errorf("CustomResourceDefinition httproutes.gateway.networking.k8s.io does not exist")
				}
				served := servedVersions(crd)
				if !slices.Contains(served, "v1") {
					return fmt.Errorf("the HTTPRoute CRD serves %s, not v1", strings.Join(served, ", "))
				}
				if crd.GetLabels()[install.CRDOwnedLabel] == "lightmesh" {
					return check.Passf("lightmesh's")
				}
				version := crd.GetAnnotations()[GatewayAPIBundleVersion]
				if version == "" {
					version = "of unknown version"
				}
				channel := crd.GetAnnotations()["gateway.networking.k8s.io/channel"]
				if channel != "" {
					return check.Passf("upstream Gateway API %s (%s channel)", version, channel)
				}
				return check.Passf("upstream Gateway API %s", version)
			},
		},
		{
			ID:          "istio",
			Description: "Istio itself is not installed",
			Hint:        "lightmesh serves Istio's APIs itself; remove Istio (istioctl uninstall --purge), or keep workloads of the two meshes in separate namespaces and never inject both",
			Run: func(ctx context.Context) error {
				list, err := c.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: "app=istiod"})
				if err != nil {
					return fmt.Errorf("look for istiod: %w", err)
				}
				var where []string
				for _, d := range list.Items {
					where = append(where, d.Namespace+"/"+d.Name)
				}
				if len(where) > 0 {
					return check.Warnf("Istio's control plane runs (%s): both meshes watch the same resources", strings.Join(where, ", "))
				}
				return nil
			},
		},
		{
			ID:          "unsupported-fields",
			Description: "the policy resources use only fields lightmesh supports",
			Hint:        "remove or replace the fields listed (the controller ignores them), and create the Secrets a Gateway names as missing (kubectl create secret tls NAME -n NAMESPACE); kubectl get <kind> <name> -o yaml shows the condition",
			Run: func(ctx context.Context) error {
				problems, err := c.unsupported(ctx)
				if err != nil {
					return err
				}
				return check.Warn(errList(problems))
			},
		},
		{
			ID:          "conflicts",
			Description: "no two policy resources compete for the same host or namespace",
			Hint:        "merge the competing resources into one, or delete the newer: with Istio's rules only the oldest applies",
			Run: func(ctx context.Context) error {
				problems, err := c.conflicts(ctx)
				if err != nil {
					return err
				}
				return check.Warn(errList(problems))
			},
		},
	}}
}

// unsupported lists the resources of every policy kind whose status says the controller
// does not support some of them.
func (c *Checker) unsupported(ctx context.Context) ([]string, error) {
	objects, err := c.policyObjects(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, item := range objects {
		for _, msg := range unsupportedConditions(item.GetKind(), item.Object) {
			problems = append(problems, fmt.Sprintf("%s %s/%s: %s", item.GetKind(), item.GetNamespace(), item.GetName(), msg))
		}
	}
	sort.Strings(problems)
	return problems, nil
}

// conflicts translates every policy resource as the controller does and lists those that
// compete for the same thing, where Istio's rule is that the oldest wins: two
// VirtualServices (or a VirtualService and an HTTPRoute) for one host of the mesh, two
// DestinationRules for one host, two namespace-wide PeerAuthentications in one namespace.
func (c *Checker) conflicts(ctx context.Context) ([]string, error) {
	objects, err := c.policyObjects(ctx)
	if err != nil {
		return nil, err
	}
	res, _ := translate.TranslateObjects(objects, translate.Options{})
	var problems []string
	type owner struct{ virtualServices, httpRoutes []string }
	hosts := map[string]*owner{}
	for _, vh := range res.Model.VirtualHosts {
		if !slices.Contains(vh.Gateways, policy.MeshGateway) {
			continue
		}
		for _, h := range vh.Hosts {
			o := hosts[h]
			if o == nil {
				o = &owner{}
				hosts[h] = o
			}
			switch {
			case strings.HasPrefix(vh.Source, "VirtualService ") && !slices.Contains(o.virtualServices, vh.Source):
				o.virtualServices = append(o.virtualServices, vh.Source)
			case strings.HasPrefix(vh.Source, "HTTPRoute ") && !slices.Contains(o.httpRoutes, vh.Source):
				o.httpRoutes = append(o.httpRoutes, vh.Source)
			}
		}
	}
	for h, o := range hosts {
		if len(o.virtualServices) > 1 || (len(o.virtualServices) > 0 && len(o.httpRoutes) > 0) {
			all := append(append([]string{}, o.virtualServices...), o.httpRoutes...)
			problems = append(problems, fmt.Sprintf("host %s is routed by %s: only the oldest applies", h, strings.Join(all, " and ")))
		}
	}
	rules := map[string][]string{}
	for _, d := range res.Model.Destinations {
		if !slices.Contains(rules[d.Host], d.Source) {
			rules[d.Host] = append(rules[d.Host], d.Source)
		}
	}
	for h, sources := range rules {
		if len(sources) > 1 {
			problems = append(problems, fmt.Sprintf("host %s has %s: only the oldest applies", h, strings.Join(sources, " and ")))
		}
	}
	wide := map[string][]string{}
	for _, pa := range res.Model.PeerAuthentications {
		if pa.Selector == nil {
			wide[pa.Namespace] = append(wide[pa.Namespace], pa.Name)
		}
	}
	for ns, names := range wide {
		if len(names) > 1 {
			sort.Strings(names)
			problems = append(problems, fmt.Sprintf("namespace %s has %d namespace-wide PeerAuthentications (%s): only the oldest applies", ns, len(names), strings.Join(names, ", ")))
		}
	}
	sort.Strings(problems)
	return problems, nil
}

// policyObjects lists the resources of every policy kind whose CRD exists, in its v1
// version when served, else its newest.
func (c *Checker) policyObjects(ctx context.Context) ([]*unstructured.Unstructured, error) {
	d, err := c.dynamicClient()
	if err != nil {
		return nil, err
	}
	var objects []*unstructured.Unstructured
	for _, def := range install.CRDs() {
		crd, err := c.crd(ctx, def.Name())
		if err != nil {
			return nil, err
		}
		if crd == nil {
			continue
		}
		served := servedVersions(crd)
		if len(served) == 0 {
			continue
		}
		version := served[len(served)-1]
		if slices.Contains(served, "v1") {
			version = "v1"
		}
		gvr := schema.GroupVersionResource{Group: def.Group, Version: version, Resource: def.Plural}
		list, err := d.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", def.Name(), err)
		}
		for i := range list.Items {
			item := &list.Items[i]
			if item.GetKind() == "" {
				item.SetKind(def.Kind)
			}
			objects = append(objects, item)
		}
	}
	return objects, nil
}

// UnsupportedMarker starts the part of a condition message in which the controller lists
// the fields it does not apply (it may stand in an Accepted=True condition's message).
const UnsupportedMarker = "lightmesh does not apply these fields"

// unsupportedConditions are the messages of the conditions the controller wrote to say what
// it does not support or could not accept: in Istio resources' status.conditions and in
// HTTPRoutes' status.parents[] of our controller, every Reconciled, Accepted or
// ResolvedRefs condition that is False, or whose reason is UnsupportedFields or
// UnsupportedValue, or whose message lists unapplied fields. The same reason and message
// on two conditions are reported once.
func unsupportedConditions(kind string, obj map[string]any) []string {
	var conditions []any
	if kind == "HTTPRoute" {
		parents, _, _ := unstructured.NestedSlice(obj, "status", "parents")
		for _, raw := range parents {
			p, _ := raw.(map[string]any)
			if p["controllerName"] != ControllerName {
				continue
			}
			cs, _ := p["conditions"].([]any)
			conditions = append(conditions, cs...)
		}
	} else {
		conditions, _, _ = unstructured.NestedSlice(obj, "status", "conditions")
	}
	var out []string
	for _, raw := range conditions {
		cond, _ := raw.(map[string]any)
		typ, _ := cond["type"].(string)
		status, _ := cond["status"].(string)
		reason, _ := cond["reason"].(string)
		message, _ := cond["message"].(string)
		if !slices.Contains([]string{"Reconciled", "Accepted", "ResolvedRefs"}, typ) {
			continue
		}
		problem := status == "False" || reason == "UnsupportedFields" || reason == "UnsupportedValue"
		if at := strings.Index(message, UnsupportedMarker); at >= 0 && !problem {
			problem, message = true, message[at:]
		}
		if !problem {
			continue
		}
		text := message
		if text == "" {
			text = reason
		}
		if reason != "" && message != "" {
			text = reason + ": " + message
		}
		if !slices.Contains(out, text) {
			out = append(out, text)
		}
	}
	return out
}
