package install

import (
	"slices"
	"strings"
	"testing"
)

// stats.prometheusUrl reaches the stats service as --prometheus-url; a bad URL is refused;
// the stored values leave stats out while it has its defaults.
func TestStatsPrometheusURL(t *testing.T) {
	v := DefaultValues()
	if args := statsArgs(v); slices.Contains(args, "--prometheus-url") {
		t.Errorf("default stats args %v name a Prometheus", args)
	}
	if stored, err := v.StoredYAML(); err != nil || strings.Contains(string(stored), "stats") {
		t.Errorf("default stored values mention stats: %v\n%s", err, stored)
	}
	if err := v.Set("stats.prometheusUrl=http://prometheus.lightmesh.svc:9090"); err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	args := statsArgs(v)
	if i := slices.Index(args, "--prometheus-url"); i < 0 || i+1 >= len(args) || args[i+1] != "http://prometheus.lightmesh.svc:9090" {
		t.Errorf("stats args %v, want --prometheus-url http://prometheus.lightmesh.svc:9090", args)
	}
	for _, bad := range []string{"prometheus:9090", "ftp://p", "http://"} {
		v.Stats.PrometheusURL = bad
		if err := v.Validate(); err == nil || !strings.Contains(err.Error(), "stats.prometheusUrl") {
			t.Errorf("stats.prometheusUrl=%s: err %v", bad, err)
		}
	}
}
