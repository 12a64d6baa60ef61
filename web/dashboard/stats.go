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
	"github.com/lightmesh/lightmesh/internal/tap"
)

// StatSource answers stat queries (the stats API's GET /api/v1/stat).
type StatSource interface {
	Stat(ctx context.Context, q url.Values) (*stats.Response, error)
}

// EdgeSource answers edge queries (the stats API's GET /api/v1/edges).
type EdgeSource interface {
	Edges(ctx context.Context, q url.Values) (*stats.EdgesResponse, error)
}

// TapSource opens a live tap (the controller's GET tap.APIPath): newline-delimited JSON, one
// tap.Event or tap.StreamError a line, until the query's max or duration. The caller closes
// the stream.
type TapSource interface {
	Tap(ctx context.Context, q url.Values) (io.ReadCloser, error)
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
	status, body, err := h.get(ctx, stats.APIPath, q)
	if err != nil {
		return nil, err
	}
	return decodeStat(status, body)
}

// Edges queries the stats API's edges.
func (h *HTTPStats) Edges(ctx context.Context, q url.Values) (*stats.EdgesResponse, error) {
	status, body, err := h.get(ctx, stats.EdgesPath, q)
	if err != nil {
		return nil, err
	}
	var resp stats.EdgesResponse
	if err := decodeAnswer(status, body, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Tap opens the controller's tap stream; the request lasts as long as ctx.
func (h *HTTPStats) Tap(ctx context.Context, q url.Values) (io.ReadCloser, error) {
	client := h.Client
	if client == nil {
		client = &http.Client{} // bounded by ctx: a tap lasts its duration
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(h.Base, "/")+tap.APIPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the tap API at %s does not answer: %w", h.Base, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, apiError("tap", resp.StatusCode, body)
	}
	return resp.Body, nil
}

func (h *HTTPStats) get(ctx context.Context, path string, q url.Values) (int, []byte, error) {
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(h.Base, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("the stats API at %s does not answer: %w", h.Base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatBody))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// KubeStats reaches the stats API through the Kubernetes API server's service proxy, as
// `mesh stat` does: RBAC decides who may read it (get on services/proxy).
type KubeStats struct {
	Client    rest.Interface
	Namespace string
	// Service is "name:port" of the stats service.
	Service string
	// StreamClient, when set, opens the tap streams: a client without an overall request
	// timeout (a tap lasts its duration, bounded by the request's context).
	StreamClient rest.Interface
}

// Stat queries the stats API through the API server.
func (k *KubeStats) Stat(ctx context.Context, q url.Values) (*stats.Response, error) {
	status, body, err := k.get(ctx, stats.APIPath, q)
	if err != nil {
		return nil, err
	}
	return decodeStat(status, body)
}

// Edges queries the stats API's edges through the API server.
func (k *KubeStats) Edges(ctx context.Context, q url.Values) (*stats.EdgesResponse, error) {
	status, body, err := k.get(ctx, stats.EdgesPath, q)
	if err != nil {
		return nil, err
	}
	var resp stats.EdgesResponse
	if err := decodeAnswer(status, body, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Tap opens the controller's tap stream through the API server.
func (k *KubeStats) Tap(ctx context.Context, q url.Values) (io.ReadCloser, error) {
	client := k.Client
	if k.StreamClient != nil {
		client = k.StreamClient
	}
	req := client.Get().AbsPath("/api/v1/namespaces", k.Namespace, "services", k.Service, "proxy", tap.APIPath)
	for key, values := range q {
		req = req.Param(key, values[0])
	}
	stream, err := req.Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("the tap API of %s/%s: %w", k.Namespace, k.Service, err)
	}
	return stream, nil
}

func (k *KubeStats) get(ctx context.Context, path string, q url.Values) (int, []byte, error) {
	req := k.Client.Get().AbsPath("/api/v1/namespaces", k.Namespace, "services", k.Service, "proxy", path)
	for key, values := range q {
		req = req.Param(key, values[0])
	}
	body, err := req.DoRaw(ctx)
	if err != nil && len(body) == 0 {
		return 0, nil, fmt.Errorf("the stats service %s/%s: %w", k.Namespace, k.Service, err)
	}
	status := http.StatusOK
	if err != nil {
		status = http.StatusBadGateway
	}
	return status, body, nil
}

func decodeStat(status int, body []byte) (*stats.Response, error) {
	var resp stats.Response
	if err := decodeAnswer(status, body, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// decodeAnswer reads a stats API answer into v, or its error.
func decodeAnswer(status int, body []byte, v any) error {
	if status != http.StatusOK {
		return apiError("stats", status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("the stats API answered something other than stats: %w", err)
	}
	return nil
}

func apiError(api string, status int, body []byte) error {
	var apiErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		return fmt.Errorf("the %s API refused the query: %s", api, apiErr.Error)
	}
	return fmt.Errorf("the %s API answered %d", api, status)
}
