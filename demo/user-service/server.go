package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serviceName is the gRPC health service name that answers besides "" (the whole server).
const serviceName = "user-service"

// config is what the environment sets.
type config struct {
	// Version is "v1" or "v2"; v2 adds the field "email" to users.
	Version string
	// FailRate is the fraction (0..1) of requests answered 500.
	FailRate float64
	// FailEvery, when above 0, answers every FailEvery-th request 500 (and FailRate is
	// ignored): deterministic failures.
	FailEvery int
	// Rand returns a number in [0, 1); nil means math/rand/v2.
	Rand func() float64
}

// configFromEnv reads VERSION, FAIL_RATE and FAIL_EVERY.
func configFromEnv(getenv func(string) string) (config, error) {
	cfg := config{Version: getenv("VERSION")}
	if cfg.Version == "" {
		cfg.Version = "v1"
	}
	if cfg.Version != "v1" && cfg.Version != "v2" {
		return config{}, fmt.Errorf("VERSION is %q: set it to v1 or v2", cfg.Version)
	}
	if s := getenv("FAIL_RATE"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			return config{}, fmt.Errorf("FAIL_RATE is %q: set it to a number from 0 to 1", s)
		}
		cfg.FailRate = f
	}
	if s := getenv("FAIL_EVERY"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return config{}, fmt.Errorf("FAIL_EVERY is %q: set it to a whole number, 0 for never", s)
		}
		cfg.FailEvery = n
	}
	return cfg, nil
}

// user is one stored user; Email is shown by v2 only.
type user struct {
	ID    int
	Name  string
	Email string
}

// userJSON is a user as an answer shows it.
type userJSON struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Email   *string `json:"email,omitempty"`
	Version string  `json:"version"`
}

// userInput is the body of POST and PUT.
type userInput struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// service holds the users of one process (each replica has its own, in memory).
type service struct {
	cfg      config
	rand     func() float64
	requests atomic.Uint64

	mu     sync.Mutex
	users  map[int]*user
	nextID int
}

// seedUsers are the users every replica starts with; the traffic generator asks for ids 1..5.
var seedUsers = []user{
	{1, "Alice", "alice@example.com"},
	{2, "Bob", "bob@example.com"},
	{3, "Carol", "carol@example.com"},
	{4, "Dave", "dave@example.com"},
	{5, "Eve", "eve@example.com"},
}

// newHandler returns the HTTP API.
func newHandler(cfg config) http.Handler {
	s := &service{cfg: cfg, rand: cfg.Rand, users: map[int]*user{}}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	for _, u := range seedUsers {
		s.users[u.ID] = &u
		s.nextID = max(s.nextID, u.ID)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		s.write(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/api/users", s.listOrCreate)
	mux.HandleFunc("/api/users/{id}", s.oneUser)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return s.withVersionAndFailures(mux)
}

// maxDelay bounds the ?delay= a request may ask for.
const maxDelay = 60 * time.Second

// withVersionAndFailures sets x-version on every answer, holds a request that asks for it
// with ?delay=DURATION (the circuit-breaker demo keeps connections busy that way), and injects
// the configured failures into every request but /healthz.
func (s *service) withVersionAndFailures(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-version", s.cfg.Version)
		if d := r.URL.Query().Get("delay"); d != "" && r.URL.Path != "/healthz" {
			delay, err := time.ParseDuration(d)
			if err != nil || delay < 0 || delay > maxDelay {
				s.writeError(w, http.StatusBadRequest, fmt.Sprintf("delay %q: give a duration from 0s to %s, such as 500ms", d, maxDelay))
				return
			}
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-r.Context().Done():
				timer.Stop()
				return
			}
		}
		if r.URL.Path != "/healthz" && s.shouldFail() {
			s.writeError(w, http.StatusInternalServerError, "injected failure")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *service) shouldFail() bool {
	n := s.requests.Add(1)
	if s.cfg.FailEvery > 0 {
		return n%uint64(s.cfg.FailEvery) == 0
	}
	return s.cfg.FailRate > 0 && s.rand() < s.cfg.FailRate
}

// listOrCreate serves /api/users: GET lists, POST creates.
func (s *service) listOrCreate(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		ids := make([]int, 0, len(s.users))
		for id := range s.users {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		list := make([]userJSON, 0, len(ids))
		for _, id := range ids {
			list = append(list, s.view(s.users[id]))
		}
		s.mu.Unlock()
		s.write(w, http.StatusOK, map[string]any{"users": list})
	case http.MethodPost:
		in, ok := s.readInput(w, r)
		if !ok {
			return
		}
		if strings.TrimSpace(in.Name) == "" {
			s.writeError(w, http.StatusBadRequest, `a user needs a "name"`)
			return
		}
		s.mu.Lock()
		s.nextID++
		u := &user{ID: s.nextID, Name: in.Name, Email: in.Email}
		s.users[u.ID] = u
		v := s.view(u)
		s.mu.Unlock()
		w.Header().Set("Location", "/api/users/"+v.ID)
		s.write(w, http.StatusCreated, v)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		s.writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on /api/users: use GET or POST")
	}
}

// oneUser serves /api/users/{id}: GET reads, PUT updates.
func (s *service) oneUser(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPut {
		w.Header().Set("Allow", "GET, HEAD, PUT")
		s.writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on /api/users/{id}: use GET or PUT")
		return
	}
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		s.writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", r.PathValue("id")))
		return
	}
	var in userInput
	if r.Method == http.MethodPut {
		var ok bool
		if in, ok = s.readInput(w, r); !ok {
			return
		}
	}
	s.mu.Lock()
	u, found := s.users[id]
	if found && r.Method == http.MethodPut {
		if in.Name != "" {
			u.Name = in.Name
		}
		if in.Email != "" {
			u.Email = in.Email
		}
	}
	var v userJSON
	if found {
		v = s.view(u)
	}
	s.mu.Unlock()
	if !found {
		s.writeError(w, http.StatusNotFound, fmt.Sprintf("no user %d", id))
		return
	}
	s.write(w, http.StatusOK, v)
}

// view renders u as this version shows it; the caller holds s.mu.
func (s *service) view(u *user) userJSON {
	v := userJSON{ID: strconv.Itoa(u.ID), Name: u.Name, Version: s.cfg.Version}
	if s.cfg.Version == "v2" {
		email := u.Email
		v.Email = &email
	}
	return v
}

func (s *service) readInput(w http.ResponseWriter, r *http.Request) (userInput, bool) {
	var in userInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&in); err != nil {
		s.writeError(w, http.StatusBadRequest, "the body is not a JSON user: "+err.Error())
		return in, false
	}
	return in, true
}

func (s *service) writeError(w http.ResponseWriter, status int, msg string) {
	s.write(w, status, map[string]string{"error": msg})
}

// write answers status with v as JSON, with the field "version" added (v is a userJSON,
// which has it, or a map).
func (s *service) write(w http.ResponseWriter, status int, v any) {
	switch m := v.(type) {
	case map[string]string:
		m["version"] = s.cfg.Version
	case map[string]any:
		m["version"] = s.cfg.Version
	}
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// newGRPCServer returns a gRPC server with the standard health service, SERVING for "" and
// "user-service".
func newGRPCServer() (*grpc.Server, *health.Server) {
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(serviceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return srv, hs
}

// serve runs the HTTP API on httpLn and the gRPC health service on grpcLn until ctx ends,
// then shuts both down (the health service first says NOT_SERVING) and returns.
func serve(ctx context.Context, httpLn, grpcLn net.Listener, cfg config, logger *slog.Logger) error {
	httpSrv := &http.Server{
		Handler:           newHandler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	grpcSrv, hs := newGRPCServer()
	errs := make(chan error, 2)
	go func() {
		if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http: %w", err)
			return
		}
		errs <- nil
	}()
	go func() {
		if err := grpcSrv.Serve(grpcLn); err != nil {
			errs <- fmt.Errorf("grpc: %w", err)
			return
		}
		errs <- nil
	}()
	logger.Info("serving", "version", cfg.Version, "http", httpLn.Addr().String(), "grpc", grpcLn.Addr().String(),
		"failRate", cfg.FailRate, "failEvery", cfg.FailEvery)

	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	hs.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = httpSrv.Shutdown(shutdownCtx)
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		grpcSrv.Stop()
	}
	if first != nil {
		return first
	}
	// Collect both goroutines' results so neither leaks.
	for range 2 {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
