// Package dashboard is mesh-web's dashboard: a read-only web UI over the controller's stats
// API. Pages are rendered on the server (html/template) and kept live by a small script that
// polls the same JSON; every asset is embedded in the binary (no CDN), the Host header is
// checked against an allow-list (so a page of another origin cannot reach it through DNS
// rebinding), and only GET and HEAD are served.
//
// Pages: / (namespaces), /namespaces/NS (workloads of each kind with golden metrics),
// /namespaces/NS/KIND/NAME (one workload: its golden metrics and a latency and request-rate
// chart of the samples taken while the page is open), /api/stat (the stats API's JSON,
// passed through after validation).
package dashboard
