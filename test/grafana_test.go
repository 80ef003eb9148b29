package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// grafanaDashboard is the dashboard shipped for operators.
var grafanaDashboard = filepath.Join(repoRoot, "examples", "grafana", "georoute-dashboard.json")

// grafanaFamilies are the metric families of design §6; the dashboard shows
// every one of them.
var grafanaFamilies = []string{
	"coredns_georoute_requests_total",
	"coredns_georoute_failopen_total",
	"coredns_georoute_distance_km",
	"coredns_georoute_pop_healthy",
	"coredns_georoute_healthchecks_total",
	"coredns_georoute_healthcheck_duration_seconds",
	"coredns_georoute_db_reloads_total",
	"coredns_georoute_db_build_timestamp_seconds",
	"coredns_georoute_ecs_total",
}

// grafanaQueries returns every PromQL expression of the dashboard: the
// targets' expr and the query variables (label_values(METRIC, LABEL) gives
// its METRIC selector).
func grafanaQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", grafanaDashboard, err)
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]\w*\)$`)
	var out []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, k)
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			switch key {
			case "expr":
				out = append(out, v)
			case "query", "definition":
				if m := labelValues.FindStringSubmatch(v); m != nil {
					out = append(out, m[1])
				}
			}
		}
	}
	walk(doc, "")
	return out
}

var (
	// grafanaNoise is what in PromQL is not a metric name: strings, label
	// matchers, ranges, the label lists of grouping modifiers, and numbers.
	grafanaNoise = []*regexp.Regexp{
		regexp.MustCompile(`"(?:[^"\\]|\\.)*"`),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
		regexp.MustCompile(`\b\d[0-9a-zA-Z_.]*`), // numbers and durations
	}
	grafanaIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	grafanaKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// grafanaMetricNames returns the metric names an expression reads: every
// identifier that is not a function call, a keyword, or inside a string,
// label matcher, range or grouping clause.
func grafanaMetricNames(expr string) []string {
	for _, re := range grafanaNoise {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for _, m := range grafanaIdent.FindAllStringSubmatch(expr, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || grafanaKeywords[strings.ToLower(name)] {
			continue
		}
		names = append(names, name)
	}
	return names
}

// grafanaExposition reads a /metrics page: the TYPE of each family and the
// names that have at least one sample.
func grafanaExposition(t *testing.T, text string) (types map[string]string, samples map[string]bool) {
	e := parseExposition(t, text)
	types = map[string]string{}
	for name, f := range e {
		types[name] = strings.ToLower(f.GetType().String())
	}
	return types, e.names()
}

// grafanaFamily maps a histogram's _bucket/_sum/_count series to its family.
func grafanaFamily(name string, types map[string]string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && types[base] == "histogram" {
			return base
		}
	}
	return name
}

func TestGrafanaDashboardMetricsExist(t *testing.T) {
	t.Parallel()
	queries := grafanaQueries(t)
	if len(queries) < 10 {
		t.Fatalf("only %d queries found in the dashboard", len(queries))
	}

	// One pop that passes its check and two that fail it, so that a name
	// served only by the failing two is answered in fail-open mode.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	// A private copy of the database, touched below to make it reload.
	db := filepath.Join(t.TempDir(), "geo.mmdb")
	mmdb, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "geo.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, mmdb, 0o644); err != nil {
		t.Fatal(err)
	}
	corefile := fmt.Sprintf(`example.org:{port} {
    bind 127.0.0.1
    georoute {
        db %s
        reload 250ms
        pop nyc 40.7128 -74.0060 192.0.2.10 {
            check %s/healthz
        }
        pop lhr 51.4700 -0.4543 198.51.100.10 {
            check %s/lhr
        }
        pop nrt 35.7720 140.3929 203.0.113.10 {
            check %s/nrt
        }
        interval 1s
        timeout 500ms
    }
    file example.org.zone
    prometheus {metrics}
    ready {ready}
}
`, db, up.URL, down.URL, down.URL)
	zone := `$ORIGIN example.org.
@       IN SOA ns1 hostmaster 2026112301 3600 600 604800 300
@       IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
www     IN A   198.51.100.10
www     IN A   203.0.113.10
broken  IN A   198.51.100.10
broken  IN A   203.0.113.10
`
	s := startServer(t, corefile, map[string]string{"example.org.zone": zone})

	for _, q := range [][]string{
		{"+subnet=198.18.2.0/24", "www.example.org", "A"},    // ECS used, distance
		{"+subnet=198.18.3.0/24", "www.example.org", "A"},    // ECS used
		{"+subnet=0.0.0.0/0", "www.example.org", "A"},        // ECS ignored
		{"-b", "127.0.0.2", "www.example.org", "A"},          // source address
		{"+subnet=198.18.2.0/24", "broken.example.org", "A"}, // every pop down
	} {
		if r := s.query(q...); r.status != "NOERROR" {
			t.Fatalf("dig %v: %s\n%s", q, r.status, r.raw)
		}
	}
	// The database counts reloads only once it has reloaded.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(db, later, later); err != nil {
		t.Fatal(err)
	}

	var types map[string]string
	var samples map[string]bool
	deadline := time.Now().Add(30 * time.Second)
	for {
		types, samples = grafanaExposition(t, s.scrape())
		if samples["coredns_georoute_db_reloads_total"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	used := map[string]bool{}
	for _, q := range queries {
		names := grafanaMetricNames(q)
		if len(names) == 0 {
			t.Errorf("no metric name found in %q", q)
		}
		for _, name := range names {
			used[grafanaFamily(name, types)] = true
			if !samples[name] {
				t.Errorf("dashboard query %q reads %s, which /metrics of a running server does not have", q, name)
			}
		}
	}
	for _, f := range grafanaFamilies {
		if !used[f] {
			t.Errorf("the dashboard shows nothing of %s (design §6)", f)
		}
		if types[f] == "" {
			t.Errorf("/metrics has no # TYPE line for %s", f)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", s.scrape())
	}
}
