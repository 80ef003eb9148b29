package georoute

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
)

// overrideLine is one inline `override CIDR POP...` as written. It is
// resolved once the whole block is read, since the pops it names may be
// declared below it.
type overrideLine struct {
	args []string
	file string
	line int
}

// parseOverride reads `CIDR POP...`: a network without host bits (an
// IPv4-mapped one stands for its IPv4 network, since clients are looked up
// unmapped) and declared pop ids, each at most once.
func parseOverride(args []string, byID map[string]*pop) (overrideRule, error) {
	if len(args) < 2 {
		return overrideRule{}, errors.New("override needs CIDR POP...; expected e.g. 192.0.2.0/24 lhr nyc")
	}
	prefix, err := netip.ParsePrefix(args[0])
	if err != nil || prefix.Addr().Zone() != "" {
		return overrideRule{}, fmt.Errorf("override %q is not a CIDR; expected e.g. 192.0.2.0/24 or 2001:db8::/32", args[0])
	}
	if prefix != prefix.Masked() {
		return overrideRule{}, fmt.Errorf("override %s has host bits set; expected %s", args[0], prefix.Masked())
	}
	if prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
		prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
	}
	rule := overrideRule{prefix: prefix}
	for _, id := range args[1:] {
		p := byID[id]
		if p == nil {
			return overrideRule{}, fmt.Errorf("override %s: %q is not a declared pop; expected one of %s", args[0], id, declaredPops(byID))
		}
		if slices.Contains(rule.pops, p) {
			return overrideRule{}, fmt.Errorf("override %s lists pop %s twice", args[0], id)
		}
		rule.pops = append(rule.pops, p)
	}
	return rule, nil
}

// declaredPops lists the declared ids for error messages, in declaration order.
func declaredPops(byID map[string]*pop) string {
	pops := make([]*pop, 0, len(byID))
	for _, p := range byID {
		pops = append(pops, p)
	}
	slices.SortFunc(pops, func(a, b *pop) int { return a.rank - b.rank })
	ids := make([]string, len(pops))
	for i, p := range pops {
		ids[i] = p.id
	}
	return strings.Join(ids, ", ")
}

// overrideSet is the overrides of one georoute block: the inline lines and
// the `overrides` file, combined into the table the decision reads.
type overrideSet struct {
	byID   map[string]*pop
	inline []overrideRule
	// origin[i] says where inline[i] was written, for duplicate errors.
	origin []string
	// file follows the `overrides PATH`; nil without one.
	file   *textWatch
	target *atomic.Pointer[overrideTable]
}

// newOverrideSet resolves the inline lines; it is called once the block is
// read, so that every error names the line of the offending override.
func newOverrideSet(lines []overrideLine, path string, byID map[string]*pop, target *atomic.Pointer[overrideTable]) (*overrideSet, error) {
	o := &overrideSet{byID: byID, target: target}
	for _, l := range lines {
		r, err := parseOverride(l.args, byID)
		if err != nil {
			return nil, fmt.Errorf("%s:%d - Error during parsing: %v", l.file, l.line, err)
		}
		origin := fmt.Sprintf("%s:%d", l.file, l.line)
		if i := slices.IndexFunc(o.inline, func(x overrideRule) bool { return x.prefix == r.prefix }); i >= 0 {
			return nil, fmt.Errorf("%s - Error during parsing: override %s already given on %s; expected each network once", origin, r.prefix, o.origin[i])
		}
		o.inline, o.origin = append(o.inline, r), append(o.origin, origin)
	}
	if path != "" {
		o.file = &textWatch{store: fileStore{path: path}}
	}
	return o, nil
}

// load publishes the table at start-up: a missing or bad overrides file is
// a config error then, since there is no previous table to keep.
func (o *overrideSet) load() error {
	if o.file == nil {
		o.publish(nil)
		return nil
	}
	if err := o.reread(); err != nil {
		overridesReloadError.Inc()
		return fmt.Errorf("overrides: %v", err)
	}
	return nil
}

// poll re-reads the file when it changed; a file that cannot be read or
// does not parse keeps the table in service.
func (o *overrideSet) poll() {
	if o.file == nil {
		return
	}
	if err := o.reread(); err != nil && o.file.fail(err) {
		log.Errorf("overrides: %v; keeping the overrides in service", err)
		overridesReloadError.Inc()
	}
}

func (o *overrideSet) reread() error {
	data, exists, changed, err := o.file.changed()
	switch {
	case err != nil:
		return err
	case !changed:
		return nil
	case !exists:
		return fmt.Errorf("%s does not exist", o.file.store.name())
	}
	rules, err := o.parseFile(data)
	if err != nil {
		return err
	}
	o.publish(rules)
	o.file.ok()
	overridesReloadOK.Inc()
	log.Infof("overrides: %s in service, %d networks", o.file.store.name(), len(rules))
	return nil
}

// parseFile reads `CIDR POP...` lines; `#` starts a comment anywhere, since
// neither a CIDR nor a pop id can hold one.
func (o *overrideSet) parseFile(data []byte) ([]overrideRule, error) {
	var rules []overrideRule
	lineOf := map[netip.Prefix]int{}
	name := o.file.store.name()
	err := forEachLine(data, func(n int, line string) error {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return nil
		}
		r, err := parseOverride(fields, o.byID)
		if err != nil {
			return &lineError{name, n, err.Error()}
		}
		if prev, dup := lineOf[r.prefix]; dup {
			return &lineError{name, n, fmt.Sprintf("override %s already given on line %d; expected each network once", r.prefix, prev)}
		}
		if i := slices.IndexFunc(o.inline, func(x overrideRule) bool { return x.prefix == r.prefix }); i >= 0 {
			return &lineError{name, n, fmt.Sprintf("override %s already given in the Corefile on %s; expected each network once", r.prefix, o.origin[i])}
		}
		lineOf[r.prefix] = n
		rules = append(rules, r)
		return nil
	})
	return rules, err
}

// publish swaps in the inline rules plus the file's; nil when there are
// none, so that the decision skips the lookup.
func (o *overrideSet) publish(fromFile []overrideRule) {
	if len(o.inline)+len(fromFile) == 0 {
		o.target.Store(nil)
		return
	}
	o.target.Store(&overrideTable{rules: slices.Concat(o.inline, fromFile)})
}
