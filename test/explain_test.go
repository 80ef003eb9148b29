package test

import (
	"slices"
	"strings"
	"testing"
)

// explainCorefile is the demo with `debug`, or without it when off.
func explainCorefile(debug bool) string {
	d := ""
	if debug {
		d = "        debug\n"
	}
	return `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    prometheus {metrics}
    georoute www.example.org mixed.example.org {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10 2001:db8:1::10
        pop lhr 51.4700 -0.4543 198.51.100.10 2001:db8:2::10
        pop nrt 35.7720 140.3929 203.0.113.10 2001:db8:3::10
` + d + `    }
    file {testdata}/example.org.zone
}
`
}

// explainLines returns the TXT strings of an explain answer, in order.
func explainLines(r reply) []string {
	var lines []string
	for _, rr := range r.answer {
		if i := strings.Index(rr, " CH TXT "); i >= 0 {
			lines = append(lines, strings.Trim(rr[i+len(" CH TXT "):], `"`))
		}
	}
	return lines
}

func TestExplainQuery(t *testing.T) {
	t.Parallel()
	on := startServer(t, explainCorefile(true), nil)
	off := startServer(t, explainCorefile(false), nil)

	t.Run("a CH TXT query says how a client in Paris got London", func(t *testing.T) {
		r := on.query("-c", "CH", "-t", "TXT", "www.example.org", "+subnet=198.18.4.0/24")
		if r.status != "NOERROR" {
			t.Fatalf("status %s; want NOERROR\n%s", r.status, r.raw)
		}
		lines := explainLines(r)
		for _, want := range []string{
			"client 198.18.4.0: from the ECS option 198.18.4.0/24",
			"database: geo.mmdb 198.18.4.0/24: Paris, FR at 48.8566 2.3522",
			"candidate 198.51.100.10: pop lhr, healthy, 353 km",
			"candidate 192.0.2.10: pop nyc, healthy, 5837 km",
			"candidate 203.0.113.10: pop nrt, healthy, 9732 km",
			"chosen: 198.51.100.10",
			"chosen: 2001:db8:2::10",
			"scope: /24",
		} {
			if !slices.Contains(lines, want) {
				t.Errorf("explanation lacks %q; it says:\n%s", want, strings.Join(lines, "\n"))
			}
		}
		if r.ecs != "198.18.4.0/24/0" {
			t.Errorf("ECS echo %q; want 198.18.4.0/24/0: an explanation is for no one else", r.ecs)
		}
		if strings.Contains(r.raw, " IN A ") {
			t.Errorf("the explain answer carries IN records:\n%s", r.raw)
		}
	})

	t.Run("an unlocated client is explained as fallback, anonymous sites with their place", func(t *testing.T) {
		lines := explainLines(on.query("-c", "CH", "-t", "TXT", "mixed.example.org", "-b", "127.0.0.9"))
		for _, want := range []string{
			"client 127.0.0.9: the source address (no ECS option used)",
			"not located: fallback all keeps every healthy address",
			"candidate 192.0.2.200: anonymous site at 50.1109 8.6821, healthy",
			"chosen: 192.0.2.10 198.51.100.10 192.0.2.200 203.0.113.200",
			"no AAAA records at mixed.example.org.: answer unchanged",
		} {
			if !slices.Contains(lines, want) {
				t.Errorf("explanation lacks %q; it says:\n%s", want, strings.Join(lines, "\n"))
			}
		}
	})

	t.Run("explain queries are not counted as routed queries", func(t *testing.T) {
		if n := routedQueries(on); n != 0 {
			t.Errorf("requests_total sums to %v after explain queries only; want 0", n)
		}
	})

	t.Run("without debug a CH TXT query is refused as by plain CoreDNS", func(t *testing.T) {
		if r := off.query("-c", "CH", "-t", "TXT", "www.example.org"); r.status != "REFUSED" {
			t.Errorf("status %s; want REFUSED", r.status)
		}
	})

	t.Run("with debug other CH queries are still refused", func(t *testing.T) {
		for _, q := range [][]string{{"-c", "CH", "-t", "A", "www.example.org"}, {"-c", "CH", "-t", "TXT", "static.example.org"}} {
			if r := on.query(q...); r.status != "REFUSED" {
				t.Errorf("%v: status %s; want REFUSED as without debug", q, r.status)
			}
		}
		if r := on.query("-c", "CH", "-t", "TXT", "static.example.org", "+subnet=198.18.2.0/24"); r.status != "REFUSED" || r.ecs != "198.18.2.0/24/0" {
			t.Errorf("CH query with ECS: status %s, ECS %q; want REFUSED with the echo 198.18.2.0/24/0", r.status, r.ecs)
		}
	})

	t.Run("debug changes no ordinary answer", func(t *testing.T) {
		for _, q := range [][]string{
			{"www.example.org", "+subnet=198.18.4.0/24"},
			{"www.example.org", "AAAA", "+subnet=2001:db8:300::/48"},
			{"mixed.example.org", "-b", "127.0.0.2"},
			{"www.example.org", "MX"},
			{"static.example.org"},
		} {
			a, b := on.query(q...), off.query(q...)
			if !slices.Equal(a.answer, b.answer) || a.status != b.status || a.ecs != b.ecs {
				t.Errorf("%v differs with debug:\n%v %v %s\nwithout:\n%v %v %s", q, a.status, a.answer, a.ecs, b.status, b.answer, b.ecs)
			}
		}
	})
}
