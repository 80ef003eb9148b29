package test

import (
	"slices"
	"testing"
)

// rewrite runs above georoute and may edit the query's OPT RR (edns0
// rules) without updating its RDLENGTH: well-formed queries must still be
// answered, routed by the ECS that rewrite left.
func TestRewriteEDNS0AboveGeoroute(t *testing.T) {
	t.Parallel()
	s := startServer(t, `example.org:{port} {
    bind 127.0.0.1
    ready {ready}
    rewrite edns0 local set 0xffee abcd
    georoute www.example.org {
        db {testdata}/geo.mmdb
        pop nyc 40.7128 -74.0060 192.0.2.10
        pop lhr 51.4700 -0.4543 198.51.100.10
        pop nrt 35.7720 140.3929 203.0.113.10
    }
    file {testdata}/example.org.zone
}
`, nil)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"a London client with a cookie gets London", []string{"www.example.org", "+subnet=198.18.2.0/24", "+cookie"}, []string{"198.51.100.10"}},
		{"a Tokyo client without a cookie gets Tokyo", []string{"www.example.org", "+subnet=198.18.3.0/24", "+nocookie"}, []string{"203.0.113.10"}},
		{"a client without ECS is answered", []string{"www.example.org", "-b", "127.0.0.4"}, []string{"192.0.2.10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.query(tc.args...)
			if r.status != "NOERROR" || !slices.Equal(r.addresses(), tc.want) {
				t.Errorf("status %s, %v; want NOERROR, %v\n%s", r.status, r.addresses(), tc.want, r.raw)
			}
		})
	}
}
