package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/lightmesh/lightmesh/controller/stats"
)

// StatSource answers stat queries (the stats API's GET /api/v1/stat).
type StatSource interface {
	Stat(ctx context.Context, q url.Values) (*stats.Response, error)
}

// maxStatBody bounds a stats API answer.
const maxStatBody = 8 << 20

// HTTPStats reaches the stats API at a base URL, such as http://stats.lightmesh.svc:8085
// (mesh-web in the cluster).
type HTTPStats struct {
	Base   string
	Client *http.Client
}

// Stat queries the stats API.
func (h *HTTPStats) Stat(ctx context.Context, q url.Values) (*stats.Response, error) {
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(h.Base, "/")+stats.APIPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the stats API at %s does not answer: %w", h.Base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatBody))
	if err != nil {
		return nil, err
	}
	return decodeStat(resp.StatusCode, body)
}

// KubeStats reaches the stats API through the Kubernetes API server's service proxy, as
// `mesh stat` does: RBAC decides who may read it (get on services/proxy).
type KubeStats struct {
	Client    rest.Interface
	Namespace string
	// Service is "name:port" of the stats service.
	Service string
}

// Stat queries the stats API through the API server.
func (k *KubeStats) Stat(ctx context.Context, q url.Values) (*stats.Response, error) {
	req := k.Client.Get().AbsPath("/api/v1/namespaces", k.Namespace, "services", k.Service, "proxy", stats.APIPath)
	for key, values := range q {
		req = req.Param(key, values[0])
	}
	body, err := req.DoRaw(ctx)
	if err != nil && len(body) == 0 {
		return nil, fmt.Errorf("the stats service %s/%s: %w", k.Namespace, k.Service, err)
	}
	status := http.StatusOK
	if err != nil {
		status = http.StatusBadGateway
	}
	return decodeStat(status, body)
}

func decodeStat(status int, body []byte) (*stats.Response, error) {
	if status != http.StatusOK {
		var apiErr struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
			return nil, fmt.Errorf("the stats API refused the query: %s", apiErr.Error)
		}
		return nil, fmt.Errorf("the stats API answered %d", status)
	}
	var resp stats.Response
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("the stats API answered something other than stats: %w", err)
	}
	return &resp, nil
}
