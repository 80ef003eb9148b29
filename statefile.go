package georoute

import (
	"fmt"
	"strings"
	"time"
	"unicode"
)

// drainEntry is one line of the state file: `ID [until RFC3339-TIME]
// [REASON...]`, a pop taken out by hand.
type drainEntry struct {
	id string
	// until is when the drain ends by itself; zero: when it is restored.
	until  time.Time
	reason string
}

// activeAt reports whether the drain is in force at now: a drain whose
// until has passed is over, whether or not the file still lists it.
func (e drainEntry) activeAt(now time.Time) bool {
	return e.until.IsZero() || now.Before(e.until)
}

// String is the entry as a line of the state file.
func (e drainEntry) String() string {
	s := e.id
	if !e.until.IsZero() {
		s += " until " + e.until.UTC().Format(time.RFC3339Nano)
	}
	if e.reason != "" {
		s += " " + e.reason
	}
	return s
}

// stateFile is a state file as read: its lines, kept so that rewriting it
// keeps what a person or another server wrote (comments, pops of other
// blocks), and the drains they hold.
type stateFile struct {
	lines   []string
	entries []drainEntry
	// entryLine[i] is the index in lines of entries[i].
	entryLine []int
}

// stateHeader opens a state file georoute creates.
const stateHeader = "# georoute drains, one pop a line: ID [until RFC3339-TIME] [REASON...]\n" +
	"# Written by the admin endpoint; may be edited by hand. Lines starting with # are comments.\n"

// parseState reads a state file. Lines starting with `#` are comments; a
// reason is the rest of its line as written (it may hold `#`).
func parseState(name string, data []byte) (*stateFile, error) {
	s := &stateFile{}
	lineOf := map[string]int{}
	err := forEachLine(data, func(n int, line string) error {
		s.lines = append(s.lines, line)
		text := strings.TrimSpace(line)
		if text == "" || strings.HasPrefix(text, "#") {
			return nil
		}
		e, err := parseDrainLine(text)
		if err != nil {
			return &lineError{name, n, err.Error()}
		}
		if prev, dup := lineOf[e.id]; dup {
			return &lineError{name, n, fmt.Sprintf("pop %s already listed on line %d; expected one line a pop", e.id, prev)}
		}
		lineOf[e.id] = n
		s.entries = append(s.entries, e)
		s.entryLine = append(s.entryLine, len(s.lines)-1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseDrainLine reads one trimmed, non-comment line.
func parseDrainLine(text string) (drainEntry, error) {
	id, rest := cutWord(text)
	e := drainEntry{id: id}
	if word, after := cutWord(rest); word == "until" {
		at, reason := cutWord(after)
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return drainEntry{}, fmt.Errorf("pop %s until %q; expected an RFC 3339 time such as 2026-12-01T18:00:00Z", id, at)
		}
		e.until, rest = t, reason
	}
	e.reason = rest
	return e, nil
}

// cutWord splits off the first whitespace-separated word; rest is trimmed.
func cutWord(s string) (word, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// with returns the file's content with id's line replaced by e (nil: id's
// line removed), the lines of drains that are over at now dropped, and
// every other line as it was.
func (s *stateFile) with(id string, e *drainEntry, now time.Time) []byte {
	drop := map[int]bool{}
	for i, x := range s.entries {
		if x.id == id || !x.activeAt(now) {
			drop[s.entryLine[i]] = true
		}
	}
	var b strings.Builder
	if len(s.lines) == 0 {
		b.WriteString(stateHeader)
	}
	for i, line := range s.lines {
		if !drop[i] {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	if e != nil {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// validReason reports what is wrong with a reason given to the admin
// endpoint, or "": it must fit on its line and read back as written.
func validReason(reason string, until bool) string {
	switch {
	case len(reason) > 200:
		return "reason is longer than 200 bytes"
	case strings.IndexFunc(reason, unicode.IsControl) >= 0:
		return "reason holds a control character (a line break?); expected one line of text"
	case reason != strings.TrimSpace(reason):
		return "reason starts or ends with white space"
	}
	if w, _ := cutWord(reason); w == "until" && !until {
		return `reason starts with the word "until", which the state file reads as an end time; reword it`
	}
	return ""
}
