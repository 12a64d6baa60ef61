// Package e2e holds the end-to-end tests that run on the local Kubernetes cluster (`make e2e`,
// part of `make test`). The tests are built only with the `e2e` build tag; they skip loudly
// when not root and read the cluster from KUBECONFIG and kubectl from KUBECTL.
package e2e
