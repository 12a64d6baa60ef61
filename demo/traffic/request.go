package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// requestLine is one --request: a method, a URL and extra headers.
type requestLine struct {
	Method, URL string
	Header      http.Header
}

// parseRequestLine reads "METHOD URL [Name:value ...]".
func parseRequestLine(s string) (requestLine, error) {
	fields := strings.Fields(s)
	if len(fields) < 2 || !strings.HasPrefix(fields[1], "http://") {
		return requestLine{}, fmt.Errorf("--request %q: write METHOD URL [Name:value ...], such as \"GET http://user-service/api/users/1 x-canary:true\"", s)
	}
	rl := requestLine{Method: strings.ToUpper(fields[0]), URL: fields[1]}
	for _, h := range fields[2:] {
		name, value, ok := strings.Cut(h, ":")
		if !ok || name == "" {
			return requestLine{}, fmt.Errorf("--request %q: header %q: write Name:value", s, h)
		}
		if rl.Header == nil {
			rl.Header = http.Header{}
		}
		rl.Header.Add(name, value)
	}
	return rl, nil
}

// proxyErrorHeader is the header with which lightmesh's proxy says it made an answer itself.
const proxyErrorHeader = "Lightmesh-Proxy-Error"

// sendRequests sends each request once and prints one line per request, in the order given:
//
//	GET http://user-service/api/users/42 -> 404 version=v1 proxy-error=-
//
// with "error: ..." in place of the status when there was no answer. The URL is sent as
// written (its path is not cleaned), so path-normalisation cases can be tried. With parallel
// the requests are all sent at once (to fill a connection pool); else one after the other.
func sendRequests(ctx context.Context, client *http.Client, reqs []requestLine, parallel bool, out io.Writer) {
	lines := make([]string, len(reqs))
	var wg sync.WaitGroup
	for i, rl := range reqs {
		if parallel {
			wg.Go(func() { lines[i] = sendOne(ctx, client, rl) })
		} else {
			lines[i] = sendOne(ctx, client, rl)
		}
	}
	wg.Wait()
	for _, line := range lines {
		fmt.Fprintln(out, line)
	}
}

func sendOne(ctx context.Context, client *http.Client, rl requestLine) string {
	req, err := http.NewRequestWithContext(ctx, rl.Method, rl.URL, nil)
	if err != nil {
		return fmt.Sprintf("%s %s -> error: %v", rl.Method, rl.URL, err)
	}
	for name, values := range rl.Header {
		req.Header[name] = values
	}
	if u := req.URL; u.RawPath == "" && strings.Contains(rl.URL, "%") {
		// Keep escapes such as %75 as written rather than decoded and re-encoded.
		_, after, _ := strings.Cut(strings.TrimPrefix(rl.URL, "http://"), "/")
		u.Opaque = "//" + u.Host + "/" + strings.SplitN(after, "?", 2)[0]
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Sprintf("%s %s -> error: %v", rl.Method, rl.URL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return fmt.Sprintf("%s %s -> %d version=%s proxy-error=%s", rl.Method, rl.URL, resp.StatusCode,
		orDash(resp.Header.Get("x-version")), orDash(resp.Header.Get(proxyErrorHeader)))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newRequestClient is the client of sendRequests: no connection reuse between the requests
// (each is decided on its own), a bounded timeout.
func newRequestClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
