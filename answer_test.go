package georoute

import "testing"

func TestRoutesMatchesByLabels(t *testing.T) {
	g := &GeoRoute{zones: []string{"x.bad.test."}}
	tests := []struct {
		name string
		want bool
	}{
		{"x.bad.test.", true},
		{"X.Bad.Test.", true},
		{"www.x.bad.test.", true},
		{`a\.x.bad.test.`, false},   // one label "a.x" below bad.test, not below x.bad.test
		{`a\\.x.bad.test.`, true},   // an escaped backslash, then a real dot
		{`a\046x.bad.test.`, false}, // \046 is a dot inside a label
		{"ax.bad.test.", false},
		{"bad.test.", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.routes(tc.name); got != tc.want {
				t.Fatalf("routes(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}
