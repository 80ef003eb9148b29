package georoute

// scopeViews holds the merged views of the database: for each answer and
// state, the widest blocks in which every address gets the same answer
// (design §5). Until a view is ready the database network's own prefix is
// the SCOPE: always correct, never optimal.
type scopeViews struct{}

// widest returns the prefix length, in the family of d.lookup, of the
// widest block around d.lookup in which every address gets d's answer, or
// false when no merged view for exactly d's inputs is ready. It never
// blocks.
func (s *scopeViews) widest(g *GeoRoute, d *decision) (bits int, ok bool) { return 0, false }
