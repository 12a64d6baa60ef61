package dashboard

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/lightmesh/lightmesh/controller/stats"
)

// Size of the topology drawing (the SVG's viewBox) and of its nodes.
const (
	topoWidth  = 900
	topoHeight = 520
	topoRadius = 46
)

// topoNode is one workload (or client identity) of the graph, placed on a circle.
type topoNode struct {
	Name   string
	X, Y   float64
	Remote bool // not a workload of this namespace: another namespace, an identity, plain text
}

// topoEdge is one arrow from a source node to a destination node.
type topoEdge struct {
	Src, Dst       string
	X1, Y1, X2, Y2 float64 // the arrow, from node border to node border
	LX, LY         float64 // where the label goes
	RPS, Success   string
	Secured        bool
}

// topology is what the topology page draws.
type topology struct {
	Width, Height int
	Radius        int
	Nodes         []topoNode
	Edges         []topoEdge
}

// sourceNames are the nodes an edge comes from: its source workloads ("ns/name" when in
// another namespace), else the client identity, else "plain text".
func sourceNames(e stats.Edge, namespace string) []string {
	if e.Src != "" {
		var names []string
		for _, n := range strings.Split(e.Src, ",") {
			if e.SrcNamespace != namespace {
				n = e.SrcNamespace + "/" + n
			}
			names = append(names, n)
		}
		return names
	}
	if e.ClientID != "" {
		return []string{strings.TrimPrefix(e.ClientID, "spiffe://")}
	}
	return []string{"plain text"}
}

// layoutTopology places the edges' workloads on a circle, sorted by name, and draws one
// arrow per source and destination.
func layoutTopology(edges []stats.Edge, namespace string) topology {
	t := topology{Width: topoWidth, Height: topoHeight, Radius: topoRadius}
	local := map[string]bool{}
	all := map[string]bool{}
	for _, e := range edges {
		local[e.Dst] = true
		all[e.Dst] = true
		for _, s := range sourceNames(e, namespace) {
			all[s] = true
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	pos := map[string][2]float64{}
	cx, cy := float64(topoWidth)/2, float64(topoHeight)/2
	rx, ry := cx-topoRadius*3, cy-topoRadius*1.5
	for i, n := range names {
		x, y := cx, cy
		if len(names) > 1 {
			a := 2*math.Pi*float64(i)/float64(len(names)) - math.Pi/2
			x, y = cx+rx*math.Cos(a), cy+ry*math.Sin(a)
		}
		pos[n] = [2]float64{round1(x), round1(y)}
		t.Nodes = append(t.Nodes, topoNode{Name: n, X: round1(x), Y: round1(y), Remote: !local[n] && strings.ContainsAny(n, "/ ")})
	}
	for _, e := range edges {
		for _, s := range sourceNames(e, namespace) {
			a, b := pos[s], pos[e.Dst]
			dx, dy := b[0]-a[0], b[1]-a[1]
			d := math.Hypot(dx, dy)
			edge := topoEdge{Src: s, Dst: e.Dst, RPS: formatRPS(e.RequestsPerSecond), Success: formatPercent(e.SuccessRate), Secured: e.Secured}
			if d < 2*topoRadius+1 { // a workload calling itself: a short arrow above it
				edge.X1, edge.Y1 = a[0]-topoRadius/2, a[1]-topoRadius
				edge.X2, edge.Y2 = a[0]+topoRadius/2, a[1]-topoRadius
			} else {
				ux, uy := dx/d, dy/d
				edge.X1, edge.Y1 = round1(a[0]+ux*topoRadius), round1(a[1]+uy*topoRadius)
				edge.X2, edge.Y2 = round1(b[0]-ux*(topoRadius+4)), round1(b[1]-uy*(topoRadius+4))
			}
			edge.LX, edge.LY = round1((edge.X1+edge.X2)/2), round1((edge.Y1+edge.Y2)/2-6)
			t.Edges = append(t.Edges, edge)
		}
	}
	sort.SliceStable(t.Edges, func(i, j int) bool {
		if t.Edges[i].Src != t.Edges[j].Src {
			return t.Edges[i].Src < t.Edges[j].Src
		}
		return t.Edges[i].Dst < t.Edges[j].Dst
	})
	return t
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// svgNum writes a coordinate for an SVG attribute.
func svgNum(v float64) string { return fmt.Sprintf("%g", v) }
