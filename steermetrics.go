package georoute

var (
	// popDrained is 1 while a pop is drained by hand, 0 otherwise.
	popDrained = gaugeVec("pop_drained",
		"Gauge of each pop's drain: 1 drained by an operator, 0 in service.",
		"pop")

	// adminRequestCount counts admin endpoint requests by method and status.
	adminRequestCount = counterVec("admin_requests_total",
		"Counter of admin endpoint requests by method and HTTP status code.",
		"method", "code")

	// overridesReloadCount counts reads of the overrides file by result.
	overridesReloadCount = counterVec("overrides_reloads_total",
		"Counter of overrides file reloads by result (ok, error).",
		"result")

	// stateReloadCount counts reads of the state file by result.
	stateReloadCount = counterVec("state_reloads_total",
		"Counter of state file reloads by result (ok, error).",
		"result")

	// The series of both reload counters exist from the start, so that
	// rate() and increase() see the first event.
	overridesReloadOK    = overridesReloadCount.WithLabelValues("ok")
	overridesReloadError = overridesReloadCount.WithLabelValues("error")
	stateReloadOK        = stateReloadCount.WithLabelValues("ok")
	stateReloadError     = stateReloadCount.WithLabelValues("error")
)

// drainSeries owns pop_drained, one series per pop (see gaugeOwners).
var drainSeries = newGaugeOwners[string, *drainControl](popDrained, func(id string) []string { return []string{id} })

func (d *drainControl) generation() *uint64 { return &d.gen }
