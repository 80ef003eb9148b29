package georoute

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// geodbTestAsNobody runs fn with the file permissions of an unprivileged
// user, so that a mode-0 file cannot be read even when the tests run as
// root (whose permission bits stop nothing). Root switches the file-system
// uid of the calling thread only, which also drops CAP_DAC_OVERRIDE for it;
// the directories down to path are opened up for that user.
func geodbTestAsNobody(t *testing.T, path string, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	for dir := filepath.Dir(path); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(dir, st.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const nobody = 65534
	syscall.Setfsuid(nobody)
	defer syscall.Setfsuid(0)
	fn()
}

func TestOpenGeoFileRefusesAFIFOWithoutBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := openGeoFile(context.Background(), path)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("openGeoFile: %v; want a 'not a regular file' error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("openGeoFile blocked on a FIFO with no writer")
	}
}
