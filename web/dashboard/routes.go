package dashboard

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/lightmesh/lightmesh/controller/stats"
	"github.com/lightmesh/lightmesh/internal/policy"
	"github.com/lightmesh/lightmesh/internal/policy/translate"
)

// RouteSource finds the routes that apply to a workload's Services.
type RouteSource interface {
	Routes(ctx context.Context, namespace, kind, name string) (*WorkloadRoutes, error)
}

// WorkloadRoutes are the Services that select a workload's pods and the mesh route tables
// (VirtualService, HTTPRoute) for their hosts, as the controller translates them.
type WorkloadRoutes struct {
	// Services are the Services' fully qualified host names.
	Services []string
	// Tables are the route tables bound to the mesh (the sidecars) for those hosts.
	Tables []policy.VirtualHost
	// Unsupported lists the fields of those resources that lightmesh does not honour.
	Unsupported []string
	// Notes say what could not be read (a kind the credentials may not list, say).
	Notes []string
}

// routeKinds are the resources the route tables come from, each at the versions the
// controller's policy watcher accepts (newest first).
var routeKinds = []struct {
	group, resource string
	versions        []string
}{
	{"networking.istio.io", "virtualservices", []string{"v1", "v1beta1", "v1alpha3"}},
	{"gateway.networking.k8s.io", "httproutes", []string{"v1"}},
}

// KubeRoutes reads Services, the workload and the route resources from the API server
// (read-only: get on the workload kind, list on services, virtualservices and httproutes)
// and translates them with the controller's translation (internal/policy/translate), so
// the dashboard shows the routes the proxies get.
type KubeRoutes struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// DomainSuffix is the cluster's DNS suffix (translate.DefaultDomainSuffix when empty).
	DomainSuffix string
}

// Routes answers the route tables of the Services that select the workload's pods.
func (k *KubeRoutes) Routes(ctx context.Context, namespace, kind, name string) (*WorkloadRoutes, error) {
	podLabels, err := k.podLabels(ctx, namespace, kind, name)
	if err != nil {
		return nil, err
	}
	suffix := k.DomainSuffix
	if suffix == "" {
		suffix = translate.DefaultDomainSuffix
	}
	services, err := k.Client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the Services of %s: %w", namespace, err)
	}
	out := &WorkloadRoutes{}
	for _, svc := range services.Items {
		if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) {
			out.Services = append(out.Services, svc.Name+"."+svc.Namespace+".svc."+suffix)
		}
	}
	sort.Strings(out.Services)
	if len(out.Services) == 0 {
		return out, nil
	}
	objects, notes := k.routeObjects(ctx, namespace)
	out.Notes = notes
	result, err := translate.TranslateObjects(objects, translate.Options{DomainSuffix: suffix})
	if err != nil {
		// Invalid resources are left out of the model; say which.
		out.Notes = append(out.Notes, err.Error())
	}
	out.Tables = TablesFor(result.Model, out.Services)
	for _, u := range result.Unsupported {
		out.Unsupported = append(out.Unsupported, u.String())
	}
	return out, nil
}

// TablesFor returns the mesh route tables of model that apply to any of hosts.
func TablesFor(model policy.Model, hosts []string) []policy.VirtualHost {
	var tables []policy.VirtualHost
	for _, vh := range model.VirtualHosts {
		if !slices.Contains(vh.Gateways, policy.MeshGateway) {
			continue
		}
		if slices.ContainsFunc(vh.Hosts, func(h string) bool { return slices.Contains(hosts, h) }) {
			tables = append(tables, vh)
		}
	}
	return tables
}

// routeObjects lists the route resources of every namespace (a VirtualService of any
// namespace may route a host), or of namespace alone when the credentials may not list
// them cluster-wide. Kinds the cluster does not serve are skipped.
func (k *KubeRoutes) routeObjects(ctx context.Context, namespace string) ([]*unstructured.Unstructured, []string) {
	var objects []*unstructured.Unstructured
	var notes []string
	for _, kind := range routeKinds {
		var list *unstructured.UnstructuredList
		var err error
		for _, version := range kind.versions {
			gvr := schema.GroupVersionResource{Group: kind.group, Version: version, Resource: kind.resource}
			list, err = k.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{})
			if apierrors.IsForbidden(err) {
				list, err = k.Dynamic.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
				if err == nil {
					notes = append(notes, fmt.Sprintf("%s.%s of namespace %s only: the dashboard's credentials may not list them in every namespace", kind.resource, kind.group, namespace))
				}
			}
			if !apierrors.IsNotFound(err) {
				break // served at this version (or a real error)
			}
		}
		switch {
		case apierrors.IsNotFound(err):
			continue // the cluster does not serve this kind
		case err != nil:
			notes = append(notes, fmt.Sprintf("%s.%s not read: %v", kind.resource, kind.group, err))
			continue
		}
		for i := range list.Items {
			objects = append(objects, &list.Items[i])
		}
	}
	return objects, notes
}

// podLabels are the labels of the workload's pods (its pod template's).
func (k *KubeRoutes) podLabels(ctx context.Context, namespace, kind, name string) (map[string]string, error) {
	var l map[string]string
	var err error
	switch kind {
	case stats.ResourceDeployment:
		d, e := k.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			l = d.Spec.Template.Labels
		}
	case stats.ResourceStatefulSet:
		s, e := k.Client.AppsV1().StatefulSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			l = s.Spec.Template.Labels
		}
	case stats.ResourceDaemonSet:
		d, e := k.Client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			l = d.Spec.Template.Labels
		}
	case stats.ResourceJob:
		j, e := k.Client.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			l = j.Spec.Template.Labels
		}
	case stats.ResourcePod:
		p, e := k.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err = e; e == nil {
			l = p.Labels
		}
	default:
		return nil, fmt.Errorf("kind %q has no pods", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s/%s: %w", kind, namespace, name, err)
	}
	return l, nil
}

// routeView is one route of a table as the page shows it.
type routeView struct {
	Source       string
	Match        string
	Destinations []destinationView
	Action       string // a redirect or direct response, when not destinations
	Extras       string // timeout, retries, fault, rewrite
}

type destinationView struct {
	Host    string
	Subset  string
	Percent string
	Weight  uint32
}

type tableView struct {
	Source string
	Hosts  string
	Routes []routeView
}

// viewTables renders route tables for the page, hosts shortened to name.namespace.
func viewTables(tables []policy.VirtualHost) []tableView {
	var out []tableView
	for _, vh := range tables {
		tv := tableView{Source: vh.Source, Hosts: strings.Join(vh.Hosts, ", ")}
		for _, r := range vh.Routes {
			rv := routeView{Source: r.Source, Match: describeMatch(r.Match)}
			var total uint64
			for _, d := range r.Destinations {
				total += uint64(d.Weight)
			}
			for _, d := range r.Destinations {
				pct := "-"
				if total > 0 {
					pct = fmt.Sprintf("%.0f%%", 100*float64(d.Weight)/float64(total))
				}
				host := d.Host
				if d.Port != 0 {
					host = fmt.Sprintf("%s:%d", host, d.Port)
				}
				rv.Destinations = append(rv.Destinations, destinationView{Host: host, Subset: d.Subset, Percent: pct, Weight: d.Weight})
			}
			switch {
			case r.Redirect != nil:
				rv.Action = fmt.Sprintf("redirect %d", r.Redirect.StatusCode)
			case r.DirectResponse != nil:
				rv.Action = fmt.Sprintf("direct response %d", r.DirectResponse.Status)
			}
			var extras []string
			if r.Timeout != 0 {
				extras = append(extras, "timeout "+r.Timeout.String())
			}
			if r.Retries != nil {
				extras = append(extras, fmt.Sprintf("retries %d", r.Retries.Attempts))
			}
			if r.Fault != nil {
				extras = append(extras, "fault injection")
			}
			if r.Rewrite != nil {
				extras = append(extras, "rewrite")
			}
			rv.Extras = strings.Join(extras, ", ")
			tv.Routes = append(tv.Routes, rv)
		}
		out = append(out, tv)
	}
	return out
}

// describeMatch writes a match the way people read it: "path prefix /api, method GET".
func describeMatch(m policy.Match) string {
	var parts []string
	str := func(what string, s *policy.StringMatch) {
		if s == nil {
			return
		}
		parts = append(parts, what+" "+describeString(*s))
	}
	str("path", m.Path)
	str("method", m.Method)
	str("authority", m.Authority)
	str("scheme", m.Scheme)
	if m.Port != 0 {
		parts = append(parts, fmt.Sprintf("port %d", m.Port))
	}
	for _, h := range m.Headers {
		not := ""
		if h.Invert {
			not = "not "
		}
		parts = append(parts, "header "+h.Name+" "+not+describeString(h.Value))
	}
	for _, q := range m.QueryParams {
		parts = append(parts, "query "+q.Name+" "+describeString(q.Value))
	}
	if len(parts) == 0 {
		return "every request"
	}
	return strings.Join(parts, ", ")
}

func describeString(s policy.StringMatch) string {
	value := s.Value
	if s.Regex != nil {
		value = s.Regex.String()
	}
	var kind string
	switch s.Kind {
	case policy.MatchExact:
		kind = "="
	case policy.MatchPrefix:
		kind = "prefix"
	case policy.MatchSegmentPrefix:
		kind = "path prefix"
	case policy.MatchRegex:
		kind = "regex"
	case policy.MatchPresent:
		return "present"
	default:
		kind = string(s.Kind)
	}
	if s.IgnoreCase {
		kind += " (any case)"
	}
	return kind + " " + value
}
