package main

import (
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func samples(start time.Time, key string, values ...float64) []sample {
	var out []sample
	for i, v := range values {
		out = append(out, sample{At: start.Add(time.Duration(i) * time.Minute), Component: "proxy", Pod: key, Container: "mesh-proxy",
			RSS: v * (1 << 20), OpenFDs: v, Goroutines: v})
	}
	return out
}

func testOptions() options {
	return options{warmup: time.Minute, maxRSSGrowth: 0.5, rssSlack: 20, maxFDGrowth: 0.5, fdSlack: 50, maxGoroutineGrowth: 0.5, goroutineSlack: 100}
}

func TestCheckGrowth(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	flat := samples(start, "ns/flat", 100, 30, 31, 30, 32, 31, 30, 31)
	leak := samples(start, "ns/leak", 100, 30, 60, 120, 240, 480, 960, 1920)
	short := samples(start, "ns/rolled", 10, 1000)
	problems := checkGrowth(testOptions(), append(append(flat, leak...), short...), start)
	joined := strings.Join(problems, "\n")
	if len(problems) != 3 || !strings.Contains(joined, "ns/leak") || strings.Contains(joined, "ns/flat") || strings.Contains(joined, "ns/rolled") {
		t.Fatalf("problems:\n%s\nwant rss, open_fds and goroutines of ns/leak only", joined)
	}
	// The warm-up sample (100 at minute 0) is not the baseline: ns/flat starts at 30.
	if first, last, ok := ends(flat, start, time.Minute, func(s sample) float64 { return s.OpenFDs }); !ok || first > 31 || last > 31 {
		t.Errorf("ends = %v, %v, %v", first, last, ok)
	}
}

func TestPlotWritesAPNG(t *testing.T) {
	start := time.Now()
	all := append(samples(start, "a", 1, 2, 3, 4), samples(start, "b", 4, 3, 2, 1)...)
	path := filepath.Join(t.TempDir(), "soak.png")
	if err := plot(path, all, start); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// Some pixel has the first series' colour.
	b := img.Bounds()
	found := false
	for y := b.Min.Y; y < b.Max.Y && !found; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == 31 && g>>8 == 119 && bl>>8 == 180 {
				found = true
				break
			}
		}
	}
	if !found {
		t.Error("no line of the first series in the picture")
	}
}

func TestScrapeReadsTheMeshTLSCounters(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# HELP process_resident_memory_bytes x
process_resident_memory_bytes 2.5e+07
process_open_fds 40
go_goroutines 99
tls_handshake_errors_total{direction="inbound"} 2
tls_handshake_errors_total{direction="outbound"} 1
tls_expired_connections_total{direction="inbound"} 4
tls_expired_connections_total{direction="outbound"} 5
`)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().(*net.TCPAddr)
	s := scrape(time.Now(), "proxy", "ns/p", "mesh-proxy", addr.IP.String(), addr.Port)
	if s.scrapeErr != nil || s.RSS != 25e6 || s.HandshakeErrors != 3 || s.ExpiredConns != 9 {
		t.Fatalf("scraped %+v", s)
	}
	// Totals take each process's last sample: counters only grow.
	start := time.Now()
	a := samples(start, "ns/a", 1, 1, 1)
	a[1].HandshakeErrors, a[2].HandshakeErrors, a[2].ExpiredConns = 1, 1, 7
	b := samples(start, "ns/b", 1, 1)
	b[1].ExpiredConns = 3
	if errs, expired := tlsTotals(append(a, b...)); errs != 1 || expired != 10 {
		t.Errorf("tlsTotals = %v, %v; want 1, 10", errs, expired)
	}
}
