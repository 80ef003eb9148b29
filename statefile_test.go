package georoute

import (
	"strings"
	"testing"
	"time"
)

func TestParseState(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       string // the entry as written back, or the error
	}{
		{"an id alone drains until restored", "lhr", "lhr"},
		{"a reason is the rest of the line as written", "lhr  fibre cut, ticket #123", "lhr fibre cut, ticket #123"},
		{"until takes an RFC 3339 time", "lhr until 2026-12-01T18:00:00Z maintenance", "lhr until 2026-12-01T18:00:00Z maintenance"},
		{"an offset is read as the instant it names", "lhr until 2026-12-01T19:00:00+01:00", "lhr until 2026-12-01T18:00:00Z"},
		{"a bad time is refused with the line", "lhr until tomorrow", `state:2 - pop lhr until "tomorrow"; expected an RFC 3339 time`},
		{"until without a time is refused", "lhr until", `state:2 - pop lhr until ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseState("state", []byte("# comment\n"+tc.line+"\n"))
			got := ""
			if err != nil {
				got = err.Error()
			} else if len(s.entries) != 1 {
				t.Fatalf("%d entries", len(s.entries))
			} else {
				got = s.entries[0].String()
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("a pop listed twice is refused", func(t *testing.T) {
		_, err := parseState("state", []byte("lhr\n\nlhr until 2026-12-01T18:00:00Z\n"))
		if err == nil || err.Error() != "state:3 - pop lhr already listed on line 1; expected one line a pop" {
			t.Fatalf("got %v", err)
		}
	})
}

func TestStateRewriteKeepsWhatOthersWrote(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	in := "# drains of the EU servers\nfra until 2026-12-01T13:00:00Z other block's pop\nlhr old reason\r\nams until 2026-12-01T11:00:00Z over\n"
	s, err := parseState("state", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a drain replaces the pop's line and drops drains that are over", func(t *testing.T) {
		e := &drainEntry{id: "lhr", until: now.Add(time.Hour), reason: "maintenance"}
		want := "# drains of the EU servers\nfra until 2026-12-01T13:00:00Z other block's pop\nlhr until 2026-12-01T13:00:00Z maintenance\n"
		if got := string(s.with("lhr", e, now)); got != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("a restore removes the pop's line only", func(t *testing.T) {
		want := "# drains of the EU servers\nfra until 2026-12-01T13:00:00Z other block's pop\n"
		if got := string(s.with("lhr", nil, now)); got != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("a new file starts with a header that explains it", func(t *testing.T) {
		empty, _ := parseState("state", nil)
		got := string(empty.with("nyc", &drainEntry{id: "nyc"}, now))
		if !strings.HasPrefix(got, stateHeader) || !strings.HasSuffix(got, "\nnyc\n") {
			t.Fatalf("got %q", got)
		}
		back, err := parseState("state", []byte(got))
		if err != nil || len(back.entries) != 1 || back.entries[0].id != "nyc" {
			t.Fatalf("written file reads back as %v, %v", back, err)
		}
	})
}

func TestValidReason(t *testing.T) {
	for _, tc := range []struct {
		reason string
		until  bool
		ok     bool
	}{
		{"fibre cut", false, true},
		{"", false, true},
		{"until further notice", true, true},
		{"until further notice", false, false},
		{"two\nlines", false, false},
		{" padded", false, false},
		{strings.Repeat("x", 201), false, false},
	} {
		if got := validReason(tc.reason, tc.until) == ""; got != tc.ok {
			t.Errorf("validReason(%q, %v) ok = %v, want %v", tc.reason, tc.until, got, tc.ok)
		}
	}
}
