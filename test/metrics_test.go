package test

import (
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// exposition is one /metrics page as Prometheus's own text parser reads
// it: every test that looks at metrics goes through it.
type exposition map[string]*dto.MetricFamily

func parseExposition(t testing.TB, text string) exposition {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, text)
	}
	return families
}

// exposition scrapes the server's /metrics.
func (s *server) exposition() exposition {
	s.t.Helper()
	return parseExposition(s.t, s.scrape())
}

// sum adds up the samples of name whose labels include every one of
// labels, each k=v or k="v"; found is false when there is none. name is a
// family, a histogram's or summary's name_count or name_sum, or a
// histogram's name_bucket with an le label.
func (e exposition) sum(name string, labels ...string) (sum float64, found bool) {
	family, part := e[name], ""
	if family == nil {
		for _, suffix := range []string{"_count", "_sum", "_bucket"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && e[base] != nil {
				family, part = e[base], suffix
			}
		}
	}
	if family == nil {
		return 0, false
	}
	le := ""
	if part == "_bucket" {
		rest := labels[:0:0]
		for _, l := range labels {
			if v, ok := strings.CutPrefix(l, "le="); ok {
				le = strings.Trim(v, `"`)
				continue
			}
			rest = append(rest, l)
		}
		labels = rest
	}
	for _, m := range family.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		v, ok := sampleValue(m, part, le)
		if ok {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

// names are the sample names the page has: a histogram's are its
// name_bucket, name_count and name_sum, a summary's name, name_count and
// name_sum.
func (e exposition) names() map[string]bool {
	out := map[string]bool{}
	for name, f := range e {
		if len(f.Metric) == 0 {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_count"], out[name+"_sum"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_count"], out[name+"_sum"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		v = strings.Trim(v, `"`)
		if !strings.Contains(","+labelString(m)+",", ","+k+"="+v+",") {
			return false
		}
	}
	return true
}

func labelString(m *dto.Metric) string {
	parts := make([]string, 0, len(m.Label))
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

// sampleValue is a sample's value; for a histogram bucket the cumulative
// count of the bucket whose upper bound prints as le.
func sampleValue(m *dto.Metric, part, le string) (float64, bool) {
	if part == "_bucket" {
		if m.Histogram == nil {
			return 0, false
		}
		if le == "+Inf" {
			return float64(m.Histogram.GetSampleCount()), true
		}
		for _, b := range m.Histogram.Bucket {
			if strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64) == le {
				return float64(b.GetCumulativeCount()), true
			}
		}
		return 0, false
	}
	switch {
	case m.Histogram != nil && part == "_count":
		return float64(m.Histogram.GetSampleCount()), true
	case m.Histogram != nil && part == "_sum":
		return m.Histogram.GetSampleSum(), true
	case m.Summary != nil && part == "_count":
		return float64(m.Summary.GetSampleCount()), true
	case m.Summary != nil && part == "_sum":
		return m.Summary.GetSampleSum(), true
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

// metric returns the value of one series, written as Prometheus prints
// it (name{k="v",...}), or -1 when absent.
func (s *server) metric(series string) float64 {
	s.t.Helper()
	name, rest, _ := strings.Cut(series, "{")
	var labels []string
	if rest = strings.TrimSuffix(rest, "}"); rest != "" {
		labels = strings.Split(rest, ",")
	}
	if v, ok := s.exposition().sum(name, labels...); ok {
		return v
	}
	return -1
}

// metricSum adds up the series of name whose labels include every one of
// labels (each key="value" or key=value); 0 when there is none.
func (s *server) metricSum(name string, labels ...string) float64 {
	s.t.Helper()
	v, _ := s.exposition().sum(name, labels...)
	return v
}
