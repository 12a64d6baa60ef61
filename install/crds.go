package install

import (
	"sort"
	"strings"

	"github.com/lightmesh/lightmesh/internal/version"
)

// The policy CRDs lightmesh installs when the cluster does not have them: Istio's
// networking.istio.io Gateway, VirtualService and DestinationRule (served v1alpha3, v1beta1
// and v1, stored v1), security.istio.io PeerAuthentication and AuthorizationPolicy (served
// v1beta1 and v1, stored v1), and Gateway API's HTTPRoute v1.
//
// Their schemas are structural and list the fields lightmesh implements, but every object
// keeps unknown fields (x-kubernetes-preserve-unknown-fields): a field lightmesh does not
// support reaches the controller, which reports it in the resource's status, instead of
// being pruned silently by the API server.

// CRDOwnedLabel marks a CRD as installed by lightmesh (value "lightmesh"); a CRD without it
// belongs to someone else (Istio, the upstream Gateway API) and is left alone.
const CRDOwnedLabel = "app.kubernetes.io/part-of"

// CRD describes one custom resource definition install renders.
type CRD struct {
	Group, Kind, Plural, Singular string
	ShortNames                    []string
	Categories                    []string
	// Versions are served, in order; Storage is the one stored.
	Versions []string
	Storage  string
	Columns  []column
	Spec     schema
}

// Name is the CRD's object name, <plural>.<group>.
func (c CRD) Name() string { return c.Plural + "." + c.Group }

type column struct{ name, typ, path, description string }

// schema is an OpenAPI v3 schema node.
type schema map[string]any

func str() schema     { return schema{"type": "string"} }
func integer() schema { return schema{"type": "integer"} }
func boolean() schema { return schema{"type": "boolean"} }
func number() schema  { return schema{"type": "number"} }
func strs() schema    { return arr(str()) }
func arr(items schema) schema {
	return schema{"type": "array", "items": items}
}

// obj is an object with the given properties that keeps fields it does not list.
func obj(props map[string]schema) schema {
	return schema{"type": "object", "properties": toAny(props), "x-kubernetes-preserve-unknown-fields": true}
}

// mapOf is an object whose values all have the schema values (labels, header matches).
func mapOf(values schema) schema {
	return schema{"type": "object", "additionalProperties": values}
}

func toAny(props map[string]schema) map[string]any {
	out := make(map[string]any, len(props))
	for k, v := range props {
		out[k] = map[string]any(v)
	}
	return out
}

func istioStringMatch() schema {
	return obj(map[string]schema{"exact": str(), "prefix": str(), "regex": str()})
}

func workloadSelector() schema {
	return obj(map[string]schema{"matchLabels": mapOf(str())})
}

func virtualServiceSpec() schema {
	destination := obj(map[string]schema{
		"host":   str(),
		"subset": str(),
		"port":   obj(map[string]schema{"number": integer()}),
	})
	headerOps := obj(map[string]schema{"set": mapOf(str()), "add": mapOf(str()), "remove": strs()})
	headers := obj(map[string]schema{"request": headerOps, "response": headerOps})
	percentage := obj(map[string]schema{"value": number()})
	return obj(map[string]schema{
		"hosts":    strs(),
		"gateways": strs(),
		"http": arr(obj(map[string]schema{
			"name": str(),
			"match": arr(obj(map[string]schema{
				"name":          str(),
				"uri":           istioStringMatch(),
				"method":        istioStringMatch(),
				"authority":     istioStringMatch(),
				"headers":       mapOf(istioStringMatch()),
				"queryParams":   mapOf(istioStringMatch()),
				"ignoreUriCase": boolean(),
			})),
			"route": arr(obj(map[string]schema{
				"destination": destination,
				"weight":      integer(),
				"headers":     headers,
			})),
			"headers": headers,
			"timeout": str(),
			"retries": obj(map[string]schema{"attempts": integer(), "perTryTimeout": str(), "retryOn": str()}),
			"rewrite": obj(map[string]schema{"uri": str(), "authority": str()}),
			"redirect": obj(map[string]schema{
				"uri": str(), "authority": str(), "redirectCode": integer(), "scheme": str(),
			}),
			"fault": obj(map[string]schema{
				"delay": obj(map[string]schema{"fixedDelay": str(), "percentage": percentage}),
				"abort": obj(map[string]schema{"httpStatus": integer(), "percentage": percentage}),
			}),
		})),
	})
}

func trafficPolicy() schema {
	return obj(map[string]schema{
		"loadBalancer": obj(map[string]schema{"simple": str()}),
		"connectionPool": obj(map[string]schema{
			"tcp": obj(map[string]schema{"maxConnections": integer(), "connectTimeout": str()}),
			"http": obj(map[string]schema{
				"http1MaxPendingRequests":  integer(),
				"http2MaxRequests":         integer(),
				"maxRequestsPerConnection": integer(),
				"maxRetries":               integer(),
			}),
		}),
		"outlierDetection": obj(map[string]schema{
			"consecutive5xxErrors":     integer(),
			"consecutiveGatewayErrors": integer(),
			"interval":                 str(),
			"baseEjectionTime":         str(),
			"maxEjectionPercent":       integer(),
			"minHealthPercent":         integer(),
		}),
	})
}

func destinationRuleSpec() schema {
	return obj(map[string]schema{
		"host":          str(),
		"trafficPolicy": trafficPolicy(),
		"subsets": arr(obj(map[string]schema{
			"name":          str(),
			"labels":        mapOf(str()),
			"trafficPolicy": trafficPolicy(),
		})),
	})
}

func gatewaySpec() schema {
	return obj(map[string]schema{
		"selector": mapOf(str()),
		"servers": arr(obj(map[string]schema{
			"name":  str(),
			"port":  obj(map[string]schema{"number": integer(), "name": str(), "protocol": str()}),
			"hosts": strs(),
			"tls":   obj(map[string]schema{"mode": str(), "credentialName": str(), "httpsRedirect": boolean()}),
		})),
	})
}

func peerAuthenticationSpec() schema {
	mtls := obj(map[string]schema{"mode": str()})
	return obj(map[string]schema{
		"selector":      workloadSelector(),
		"mtls":          mtls,
		"portLevelMtls": mapOf(mtls),
	})
}

func authorizationPolicySpec() schema {
	return obj(map[string]schema{
		"selector": workloadSelector(),
		"action":   str(),
		"rules": arr(obj(map[string]schema{
			"from": arr(obj(map[string]schema{"source": obj(map[string]schema{
				"principals": strs(), "notPrincipals": strs(),
				"namespaces": strs(), "notNamespaces": strs(),
				"ipBlocks": strs(), "notIpBlocks": strs(),
			})})),
			"to": arr(obj(map[string]schema{"operation": obj(map[string]schema{
				"methods": strs(), "notMethods": strs(),
				"paths": strs(), "notPaths": strs(),
				"ports": strs(), "notPorts": strs(),
				"hosts": strs(), "notHosts": strs(),
			})})),
			"when": arr(obj(map[string]schema{"key": str(), "values": strs(), "notValues": strs()})),
		})),
	})
}

func httpRouteSpec() schema {
	nameValue := arr(obj(map[string]schema{"type": str(), "name": str(), "value": str()}))
	headerModifier := obj(map[string]schema{
		"set":    arr(obj(map[string]schema{"name": str(), "value": str()})),
		"add":    arr(obj(map[string]schema{"name": str(), "value": str()})),
		"remove": strs(),
	})
	pathModifier := obj(map[string]schema{"type": str(), "replaceFullPath": str(), "replacePrefixMatch": str()})
	filter := obj(map[string]schema{
		"type":                  str(),
		"requestHeaderModifier": headerModifier,
		"urlRewrite":            obj(map[string]schema{"hostname": str(), "path": pathModifier}),
		"requestRedirect": obj(map[string]schema{
			"scheme": str(), "hostname": str(), "path": pathModifier, "port": integer(), "statusCode": integer(),
		}),
	})
	return obj(map[string]schema{
		"parentRefs": arr(obj(map[string]schema{
			"group": str(), "kind": str(), "namespace": str(), "name": str(), "sectionName": str(), "port": integer(),
		})),
		"hostnames": strs(),
		"rules": arr(obj(map[string]schema{
			"name": str(),
			"matches": arr(obj(map[string]schema{
				"path":        obj(map[string]schema{"type": str(), "value": str()}),
				"headers":     nameValue,
				"queryParams": nameValue,
				"method":      str(),
			})),
			"filters": arr(filter),
			"backendRefs": arr(obj(map[string]schema{
				"group": str(), "kind": str(), "namespace": str(), "name": str(), "port": integer(), "weight": integer(),
				"filters": arr(filter),
			})),
			"timeouts": obj(map[string]schema{"request": str(), "backendRequest": str()}),
			"retry":    obj(map[string]schema{"attempts": integer(), "backoff": str(), "codes": arr(integer())}),
		})),
	})
}

var (
	istioNetworkingVersions = []string{"v1alpha3", "v1beta1", "v1"}
	istioSecurityVersions   = []string{"v1beta1", "v1"}
	istioNetworking         = []string{"istio-io", "networking-istio-io"}
	istioSecurity           = []string{"istio-io", "security-istio-io"}
)

// CRDs are the custom resource definitions lightmesh installs, in apply order.
func CRDs() []CRD {
	age := column{"Age", "date", ".metadata.creationTimestamp", ""}
	return []CRD{
		{Group: "networking.istio.io", Kind: "DestinationRule", Plural: "destinationrules", Singular: "destinationrule",
			ShortNames: []string{"dr"}, Categories: istioNetworking, Versions: istioNetworkingVersions, Storage: "v1",
			Columns: []column{{"Host", "string", ".spec.host", "The name of a service from the service registry"}, age},
			Spec:    destinationRuleSpec()},
		{Group: "networking.istio.io", Kind: "Gateway", Plural: "gateways", Singular: "gateway",
			ShortNames: []string{"gw"}, Categories: istioNetworking, Versions: istioNetworkingVersions, Storage: "v1",
			Columns: []column{age}, Spec: gatewaySpec()},
		{Group: "networking.istio.io", Kind: "VirtualService", Plural: "virtualservices", Singular: "virtualservice",
			ShortNames: []string{"vs"}, Categories: istioNetworking, Versions: istioNetworkingVersions, Storage: "v1",
			Columns: []column{
				{"Gateways", "string", ".spec.gateways", "The names of gateways and sidecars that should apply these routes"},
				{"Hosts", "string", ".spec.hosts", "The destination hosts to which traffic is being sent"},
				age,
			},
			Spec: virtualServiceSpec()},
		{Group: "security.istio.io", Kind: "AuthorizationPolicy", Plural: "authorizationpolicies", Singular: "authorizationpolicy",
			ShortNames: []string{"ap"}, Categories: istioSecurity, Versions: istioSecurityVersions, Storage: "v1",
			Columns: []column{{"Action", "string", ".spec.action", "The operation to take."}, age},
			Spec:    authorizationPolicySpec()},
		{Group: "security.istio.io", Kind: "PeerAuthentication", Plural: "peerauthentications", Singular: "peerauthentication",
			ShortNames: []string{"pa"}, Categories: istioSecurity, Versions: istioSecurityVersions, Storage: "v1",
			Columns: []column{{"Mode", "string", ".spec.mtls.mode", "Defines the mTLS mode used for peer authentication."}, age},
			Spec:    peerAuthenticationSpec()},
		{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Plural: "httproutes", Singular: "httproute",
			Categories: []string{"gateway-api"}, Versions: []string{"v1"}, Storage: "v1",
			Columns: []column{{"Hostnames", "string", ".spec.hostnames", ""}, age},
			Spec:    httpRouteSpec()},
	}
}

// CRDNames are the names of CRDs(), sorted.
func CRDNames() []string {
	var names []string
	for _, c := range CRDs() {
		names = append(names, c.Name())
	}
	sort.Strings(names)
	return names
}

// Object is the CustomResourceDefinition object of c.
func (c CRD) Object() map[string]any {
	var versions []any
	for _, name := range c.Versions {
		var columns []any
		for _, col := range c.Columns {
			m := map[string]any{"name": col.name, "type": col.typ, "jsonPath": col.path}
			if col.description != "" {
				m["description"] = col.description
			}
			columns = append(columns, m)
		}
		versions = append(versions, map[string]any{
			"name":    name,
			"served":  true,
			"storage": name == c.Storage,
			"schema": map[string]any{"openAPIV3Schema": map[string]any{
				"type": "object",
				"properties": map[string]any{
					"apiVersion": map[string]any{"type": "string"},
					"kind":       map[string]any{"type": "string"},
					"metadata":   map[string]any{"type": "object"},
					"spec":       map[string]any(c.Spec),
					// The controller writes conditions here; other controllers (Istio's
					// status, Gateway API parents) may write more.
					"status": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
				},
			}},
			"subresources":             map[string]any{"status": map[string]any{}},
			"additionalPrinterColumns": columns,
		})
	}
	names := map[string]any{
		"kind":       c.Kind,
		"listKind":   c.Kind + "List",
		"plural":     c.Plural,
		"singular":   c.Singular,
		"categories": toAnySlice(c.Categories),
	}
	if len(c.ShortNames) > 0 {
		names["shortNames"] = toAnySlice(c.ShortNames)
	}
	crd := map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata": map[string]any{
			"name": c.Name(),
			// No control-plane-ns label: CRDs are shared by every installation in the
			// cluster.
			"labels": map[string]any{
				CRDOwnedLabel:               "lightmesh",
				"app.kubernetes.io/version": version.Version,
			},
		},
		"spec": map[string]any{
			"group":    c.Group,
			"names":    names,
			"scope":    "Namespaced",
			"versions": versions,
		},
	}
	if strings.HasSuffix(c.Group, ".k8s.io") || strings.HasSuffix(c.Group, ".kubernetes.io") {
		// The API server requires it for groups of the Kubernetes project; the Gateway
		// API's own CRDs point at the pull request that approved it.
		crd["metadata"].(map[string]any)["annotations"] = map[string]any{
			"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466",
		}
	}
	// Through JSON, so the object holds only generic maps and slices like the others.
	generic, err := toMap(crd)
	if err != nil {
		panic(err) // maps of strings, bools and slices always marshal
	}
	return generic
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// CRDObjects are the objects of CRDs() whose names are not in skip.
func CRDObjects(skip map[string]bool) []map[string]any {
	var out []map[string]any
	for _, c := range CRDs() {
		if !skip[c.Name()] {
			out = append(out, c.Object())
		}
	}
	return out
}
