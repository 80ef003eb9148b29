package georoute

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"time"
)

// watch re-reads every file that changed on disk, once per interval, until
// ctx ends. A reload or shutdown never waits for it (see stop).
func (db *geoDB) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, src := range db.sources {
			src.reloadIfChanged(ctx)
		}
	}
}

// reloadIfChanged swaps in the file at src.path when it differs from the
// copy in service, and says whether it did. A file that does not open or
// validate keeps the old copy in service and is tried again at every call
// (the fault may be transient: permissions, EMFILE, a half-written file);
// every failure is counted, each distinct error logged once. Nothing is
// swapped in once ctx has ended.
func (src *geoSource) reloadIfChanged(ctx context.Context) bool {
	st, err := os.Stat(src.path)
	cur := src.current.Load()
	if err == nil && st.ModTime().Equal(cur.modTime) && st.Size() == cur.size {
		src.lastErr = ""
		return false
	}
	f, err := openGeoFile(ctx, src.path)
	if ctx.Err() != nil {
		return false
	}
	if err == nil && f.ipVersion != cur.ipVersion {
		err = fmt.Errorf("ip_version %d, expected %d like the file in service", f.ipVersion, cur.ipVersion)
	}
	if err != nil {
		dbReloadCount.WithLabelValues("error").Inc()
		if msg := err.Error(); msg != src.lastErr {
			src.lastErr = msg
			log.Errorf("db %s not reloaded, keeping the copy built %s (tried again every poll): %v", src.path, cur.buildTime.UTC().Format(time.RFC3339), err)
		}
		return false
	}
	src.lastErr = ""
	src.current.Store(f)
	src.gen.Add(1)
	// The metrics change with the answers, not a collection later.
	dbReloadCount.WithLabelValues("ok").Inc()
	dbBuildTime.WithLabelValues(src.path).Set(float64(f.buildTime.Unix()))
	// The copy swapped out is garbage now, as big as the file: collect it
	// and hand its pages back at once, instead of letting the heap grow
	// to twice the files before the next collection (measured with DB-IP:
	// 500 MiB after three swaps rather than 310).
	debug.FreeOSMemory()
	log.Infof("db %s reloaded, built %s", src.path, f.buildTime.UTC().Format(time.RFC3339))
	return true
}

// publishBuildTimes sets the build-time gauge of every file in service.
func (db *geoDB) publishBuildTimes() {
	for _, src := range db.sources {
		dbBuildTime.WithLabelValues(src.path).Set(float64(src.current.Load().buildTime.Unix()))
	}
}
