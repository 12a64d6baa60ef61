package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// defaultUserServiceURL is user-service in the demo's namespace.
const defaultUserServiceURL = "http://user-service.microservices.svc.cluster.local:8080"

// config is what the environment sets.
type config struct {
	// UserServiceURL is user-service's base URL, without /api/users.
	UserServiceURL string
	// Timeout bounds each call to user-service.
	Timeout time.Duration
}

// configFromEnv reads USER_SERVICE_URL and USER_SERVICE_TIMEOUT.
func configFromEnv(getenv func(string) string) (config, error) {
	cfg := config{UserServiceURL: getenv("USER_SERVICE_URL"), Timeout: 2 * time.Second}
	if cfg.UserServiceURL == "" {
		cfg.UserServiceURL = defaultUserServiceURL
	}
	u, err := url.Parse(cfg.UserServiceURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config{}, fmt.Errorf("USER_SERVICE_URL is %q: set it to an http:// URL such as %s", cfg.UserServiceURL, defaultUserServiceURL)
	}
	if s := getenv("USER_SERVICE_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return config{}, fmt.Errorf("USER_SERVICE_TIMEOUT is %q: set it to a positive Go duration such as 2s", s)
		}
		cfg.Timeout = d
	}
	return cfg, nil
}

// propagatedHeaders are the tracing headers passed on from a request to user-service, so a
// trace (Jaeger's uber-trace-id, B3, W3C) covers both hops.
var propagatedHeaders = []string{
	"x-request-id",
	"traceparent", "tracestate",
	"b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
	"uber-trace-id", "x-ot-span-context",
}

// id is a user id given as a JSON string ("1") or number (1).
type id string

func (v *id) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = id(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New(`"userId" must be a string or a number`)
	}
	*v = id(n.String())
	return nil
}

// orderInput is the body of POST /api/orders.
type orderInput struct {
	UserID   id     `json:"userId"`
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

// order is one stored order.
type order struct {
	ID       int
	UserID   string
	Item     string
	Quantity int
	Created  time.Time
}

// orderJSON is an order as an answer shows it, with its user as user-service answered.
type orderJSON struct {
	ID          string          `json:"id"`
	UserID      string          `json:"userId"`
	Item        string          `json:"item"`
	Quantity    int             `json:"quantity"`
	CreatedAt   time.Time       `json:"createdAt"`
	User        json.RawMessage `json:"user"`
	UserVersion string          `json:"userVersion"`
}

// userError is a failed call to user-service.
type userError struct {
	// Status is user-service's status, 0 when there was no answer.
	Status int
	// Version is the x-version of the answer, if any.
	Version string
	Err     error
}

func (e *userError) Error() string { return e.Err.Error() }

// service holds the orders of one process, in memory.
type service struct {
	cfg    config
	client *http.Client
	logger *slog.Logger

	mu     sync.Mutex
	orders map[int]*order
	nextID int
}

// newHandler returns the HTTP API.
func newHandler(cfg config, logger *slog.Logger) http.Handler {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 32
	s := &service{
		cfg:    cfg,
		client: &http.Client{Timeout: cfg.Timeout, Transport: transport},
		logger: logger,
		orders: map[int]*order{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/api/orders", s.create)
	mux.HandleFunc("/api/orders/{id}", s.get)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return mux
}

// create serves POST /api/orders.
func (s *service) create(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on /api/orders: use POST")
		return
	}
	var in orderInput
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "the body is not a JSON order: "+err.Error())
		return
	}
	if in.UserID == "" || strings.TrimSpace(in.Item) == "" {
		writeError(w, http.StatusBadRequest, `an order needs a "userId" and an "item"`)
		return
	}
	if in.Quantity == 0 {
		in.Quantity = 1
	}
	if in.Quantity < 0 {
		writeError(w, http.StatusBadRequest, `"quantity" must be positive`)
		return
	}
	user, version, err := s.fetchUser(r, string(in.UserID))
	if err != nil {
		if ue := (*userError)(nil); errors.As(err, &ue) && ue.Status == http.StatusNotFound {
			w.Header().Set("x-user-version", ue.Version)
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("user-service knows no user %q", in.UserID))
			return
		}
		s.badGateway(w, err)
		return
	}
	s.mu.Lock()
	s.nextID++
	o := &order{ID: s.nextID, UserID: string(in.UserID), Item: in.Item, Quantity: in.Quantity, Created: time.Now().UTC()}
	s.orders[o.ID] = o
	s.mu.Unlock()
	w.Header().Set("Location", "/api/orders/"+strconv.Itoa(o.ID))
	w.Header().Set("x-user-version", version)
	writeJSON(w, http.StatusCreated, view(o, user, version))
}

// get serves GET /api/orders/{id}.
func (s *service) get(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on /api/orders/{id}: use GET")
		return
	}
	n, err := strconv.Atoi(r.PathValue("id"))
	s.mu.Lock()
	o, found := s.orders[n]
	var copied order
	if found {
		copied = *o
	}
	s.mu.Unlock()
	if err != nil || !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no order %q", r.PathValue("id")))
		return
	}
	user, version, err := s.fetchUser(r, copied.UserID)
	if err != nil {
		s.badGateway(w, err)
		return
	}
	w.Header().Set("x-user-version", version)
	writeJSON(w, http.StatusOK, view(&copied, user, version))
}

func view(o *order, user json.RawMessage, version string) orderJSON {
	return orderJSON{
		ID: strconv.Itoa(o.ID), UserID: o.UserID, Item: o.Item, Quantity: o.Quantity,
		CreatedAt: o.Created, User: user, UserVersion: version,
	}
}

// badGateway answers 502 for a failed call to user-service.
func (s *service) badGateway(w http.ResponseWriter, err error) {
	body := map[string]any{"error": "user-service failed: " + err.Error()}
	if ue := (*userError)(nil); errors.As(err, &ue) {
		if ue.Status != 0 {
			body["userServiceStatus"] = ue.Status
		}
		if ue.Version != "" {
			body["userVersion"] = ue.Version
			w.Header().Set("x-user-version", ue.Version)
		}
	}
	s.logger.Warn("user-service failed", "err", err)
	writeJSON(w, http.StatusBadGateway, body)
}

// fetchUser asks user-service for user userID, on behalf of the request r, and returns its
// answer (a JSON object) and the version that answered (x-version, else the answer's
// "version" field).
func (s *service) fetchUser(r *http.Request, userID string) (json.RawMessage, string, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	target := strings.TrimRight(s.cfg.UserServiceURL, "/") + "/api/users/" + url.PathEscape(userID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, "", &userError{Err: err}
	}
	req.Header.Set("Accept", "application/json")
	for _, h := range propagatedHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(h)] = v
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", &userError{Err: err}
	}
	defer resp.Body.Close()
	version := resp.Header.Get("x-version")
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, version, &userError{Status: resp.StatusCode, Version: version, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, version, &userError{Status: resp.StatusCode, Version: version, Err: fmt.Errorf("GET /api/users/%s answered %d", userID, resp.StatusCode)}
	}
	var fields struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, version, &userError{Status: resp.StatusCode, Version: version, Err: fmt.Errorf("the answer is not a JSON object: %w", err)}
	}
	if version == "" {
		version = fields.Version
	}
	return json.RawMessage(body), version, nil
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
