// Package demo holds the seed's microservices demo: user-service (v1 and v2), order-service
// and a traffic generator (one command each in the folders below), their Kubernetes
// manifests (manifests/) and the seed's Istio resources (istio/), which lightmesh applies
// unchanged. This package's tests check that the manifests give the Istio resources every
// host, port, label and service account they name. See README.md.
package demo
