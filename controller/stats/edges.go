package stats

import (
	"context"
	"slices"
	"sort"
	"strings"
)

// EdgesPath is the edges endpoint's path.
const EdgesPath = "/api/v1/edges"

// EdgesResponse is the body of GET /api/v1/edges.
type EdgesResponse struct {
	Resource string `json:"resource"`
	Window   string `json:"window"`
	Edges    []Edge `json:"edges"`
}

// Edge is the traffic from the pods of one identity to one resource over the window, as the
// destination's proxies recorded it.
type Edge struct {
	// Src names the resources (of the query's type) whose pods run as the client identity,
	// comma-separated; empty when none is known (a plain-text client, or an identity no pod
	// of this cluster has).
	Src          string `json:"src"`
	SrcNamespace string `json:"srcNamespace"`
	Dst          string `json:"dst"`
	DstNamespace string `json:"dstNamespace"`
	// ClientID is the client proxy's identity; empty for plain-text clients.
	ClientID string `json:"clientId"`
	// Secured: the requests came over mesh mTLS.
	Secured           bool     `json:"secured"`
	RequestsPerSecond *float64 `json:"requestsPerSecond"`
	SuccessRate       *float64 `json:"successRate"`
}

// Edges answers which identities sent requests to the resources of q (q.From and q.To are
// not used).
func (s *Service) Edges(q Query) ([]Edge, error) { return s.EdgesContext(context.Background(), q) }

// EdgesContext is Edges with a context for the Prometheus queries.
func (s *Service) EdgesContext(ctx context.Context, q Query) ([]Edge, error) {
	pods, err := s.listPods(q.Namespace)
	if err != nil {
		return nil, err
	}
	type key struct{ dst, dstNS, peer string }
	groups := map[key]*windowStats{}
	now := s.opts.Now()
	src, err := s.source(ctx, q.Namespace, q.Window, now)
	if err != nil {
		return nil, err
	}
	for _, pod := range pods {
		name := owner(pod, q.Resource)
		if name == "" || (q.Name != "" && name != q.Name) || !Meshed(pod) {
			continue
		}
		pk := podKey{pod.Namespace, pod.Name}
		for _, peer := range src.peersSeen(pk, now, q.Window, false) {
			w := src.window(pk, now, q.Window, peers(false, func(p string) bool { return p == peer }))
			if !w.scraped || w.success+w.failure == 0 {
				continue
			}
			k := key{name, pod.Namespace, peer}
			if q.Resource == ResourceNamespace {
				k.dstNS = ""
			}
			g := groups[k]
			if g == nil {
				g = &windowStats{buckets: map[float64]float64{}}
				groups[k] = g
			}
			g.add(w)
		}
	}
	edges := make([]Edge, 0, len(groups))
	for k, w := range groups {
		e := Edge{Dst: k.dst, DstNamespace: k.dstNS, ClientID: k.peer, Secured: k.peer != "", RequestsPerSecond: ptr(w.rps)}
		if total := w.success + w.failure; total > 0 {
			e.SuccessRate = ptr(w.success / total)
		}
		if id := peerIdentity(k.peer); id != "" {
			ns, _, _ := strings.Cut(id, "/")
			e.SrcNamespace = ns
			e.Src, err = s.resourcesOfIdentity(q.Resource, id)
			if err != nil {
				return nil, err
			}
		}
		edges = append(edges, e)
	}
	sort.Slice(edges, func(i, j int) bool {
		a, b := edges[i], edges[j]
		if a.DstNamespace != b.DstNamespace {
			return a.DstNamespace < b.DstNamespace
		}
		if a.Dst != b.Dst {
			return a.Dst < b.Dst
		}
		return a.ClientID < b.ClientID
	})
	return edges, nil
}

// resourcesOfIdentity names the resources of type resource whose pods run as identity
// ("namespace/serviceaccount"), comma-separated.
func (s *Service) resourcesOfIdentity(resource, id string) (string, error) {
	ns, _, _ := strings.Cut(id, "/")
	pods, err := s.listPods(ns)
	if err != nil {
		return "", err
	}
	var names []string
	for _, pod := range pods {
		if podIdentity(pod) != id {
			continue
		}
		if name := owner(pod, resource); name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ","), nil
}
