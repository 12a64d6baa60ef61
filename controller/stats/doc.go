// Package stats is the controller's stats service: it finds meshed pods with a pod informer,
// scrapes each proxy's admin /metrics (port 4191) on an interval, keeps about 15 minutes of
// snapshots per pod in memory, and answers `mesh stat` with per-resource success rate, request
// rate, latency quantiles and open TCP connections over a window, so no Prometheus is needed.
// With Options.PrometheusURL it scrapes nothing and answers the same API from PromQL queries
// to that Prometheus instead (prometheus.go: PromQueries).
//
// API (JSON, read-only):
//
//	GET /api/v1/stat?resource=deployment&namespace=NS&name=NAME&window=1m
//
// resource is deployment, statefulset, daemonset, job, pod or namespace; namespace empty means
// every namespace; name empty means every resource of that type; window is a Go duration from
// 10s to 15m (default 1m). The answer is a Response: rows sorted by namespace and name.
// from=TYPE[/NAME] (with from_namespace, default the query's namespace) counts only the
// responses to the pods of that resource; to=TYPE[/NAME] (to_namespace) measures the
// resources' outbound responses from that resource's pods instead. Pods are told apart by
// the identity their proxies recorded (namespace and ServiceAccount); TCP figures are left
// out of such rows.
//
//	GET /api/v1/edges?resource=deployment&namespace=NS&name=NAME&window=1m
//
// answers who sent requests to the resources: an EdgesResponse with one Edge per resource
// and client identity (the resources that run as it, secured or plain text, rate, success).
package stats
