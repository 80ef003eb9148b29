package georoute

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// textStore is where a small text file of steering input lives: a file on
// disk (`state PATH`, `overrides PATH`) or, for drains without `state`,
// memory that outlives a Corefile reload but not the process.
type textStore interface {
	// load returns the content and a stamp that differs whenever the content
	// may have changed; exists is false when there is no file (yet).
	load() (data []byte, stamp textStamp, exists bool, err error)
	// stamp is load's stamp without reading the content.
	stamp() (textStamp, error)
	// save replaces the content atomically and returns the new stamp.
	save(data []byte) (textStamp, error)
	// name is the path for messages.
	name() string
}

// textStamp identifies one version of a file without reading it: size,
// modification time and the inode (a rename or a ConfigMap's symlink swap
// gives a new one).
type textStamp struct {
	size, mtime  int64
	dev, ino     uint64
	memVersion   uint64
	exists, read bool
}

// maxTextFile bounds a state or overrides file: both are a few lines a
// person writes; a file far beyond this is a mistake and is refused unread.
const maxTextFile = 16 << 20

// fileStore is a textStore on disk.
type fileStore struct{ path string }

func (f fileStore) name() string { return f.path }

func (f fileStore) load() ([]byte, textStamp, bool, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, textStamp{read: true}, false, nil
	}
	if err != nil {
		return nil, textStamp{}, false, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, textStamp{}, false, err
	}
	if !st.Mode().IsRegular() {
		return nil, textStamp{}, false, fmt.Errorf("%s is not a regular file", f.path)
	}
	if st.Size() > maxTextFile {
		return nil, textStamp{}, false, fmt.Errorf("%s is %d bytes; expected at most %d", f.path, st.Size(), maxTextFile)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxTextFile+1))
	if err != nil {
		return nil, textStamp{}, false, err
	}
	return data, stampOf(st), true, nil
}

func (f fileStore) stamp() (textStamp, error) {
	st, err := os.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return textStamp{read: true}, nil
	}
	if err != nil {
		return textStamp{}, err
	}
	return stampOf(st), nil
}

func stampOf(st fs.FileInfo) textStamp {
	s := textStamp{size: st.Size(), mtime: st.ModTime().UnixNano(), exists: true, read: true}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(sys.Dev), uint64(sys.Ino)
	}
	return s
}

// save writes a temporary file in the same directory and renames it over
// the path, so that a reader (another server sharing the file) sees the
// old content or the new, never a part.
func (f fileStore) save(data []byte) (textStamp, error) {
	dir := filepath.Dir(f.path)
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(f.path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".*")
	if err != nil {
		return textStamp{}, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return textStamp{}, err
	}
	if err := tmp.Chmod(mode); err != nil {
		return textStamp{}, err
	}
	if err := tmp.Sync(); err != nil {
		return textStamp{}, err
	}
	// The stamp of what we wrote, taken before the rename (which keeps
	// inode, size and mtime): a stat after it could see another server's
	// file renamed over ours, whose change would then go unnoticed.
	st, err := tmp.Stat()
	if err != nil {
		return textStamp{}, err
	}
	if err := tmp.Close(); err != nil {
		return textStamp{}, err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return textStamp{}, err
	}
	ok = true
	return stampOf(st), nil
}

// memoryStore keeps drains of a block without `state`: in memory, shared
// by the instances of one server block across Corefile reloads (the new
// instance starts while the old one still serves), gone with the process.
type memoryStore struct{ key string }

var memoryFiles = struct {
	sync.Mutex
	data    map[string][]byte
	version map[string]uint64
}{data: map[string][]byte{}, version: map[string]uint64{}}

func (m memoryStore) name() string { return "memory" }

func (m memoryStore) load() ([]byte, textStamp, bool, error) {
	memoryFiles.Lock()
	defer memoryFiles.Unlock()
	data, ok := memoryFiles.data[m.key]
	return bytes.Clone(data), textStamp{memVersion: memoryFiles.version[m.key], exists: ok, read: true}, ok, nil
}

func (m memoryStore) stamp() (textStamp, error) {
	memoryFiles.Lock()
	defer memoryFiles.Unlock()
	_, ok := memoryFiles.data[m.key]
	return textStamp{memVersion: memoryFiles.version[m.key], exists: ok, read: true}, nil
}

func (m memoryStore) save(data []byte) (textStamp, error) {
	memoryFiles.Lock()
	defer memoryFiles.Unlock()
	memoryFiles.data[m.key] = bytes.Clone(data)
	memoryFiles.version[m.key]++
	return textStamp{memVersion: memoryFiles.version[m.key], exists: true, read: true}, nil
}

// lineError is a parse error at one line of a steering file; it prints as
// the config errors do: `file:line - what is wrong`.
type lineError struct {
	file string
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("%s:%d - %s", e.file, e.line, e.msg) }

// forEachLine calls fn with the 1-based number and the text of every line,
// without its line ending.
func forEachLine(data []byte, fn func(n int, line string) error) error {
	n := 0
	for len(data) > 0 {
		n++
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if err := fn(n, string(bytes.TrimSuffix(line, []byte("\r")))); err != nil {
			return err
		}
	}
	return nil
}

// pollEvery runs fn every interval until stop is closed.
func pollEvery(interval time.Duration, stop <-chan struct{}, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			fn()
		}
	}
}

// textWatch follows one textStore for a poller: it reads the content only
// when the stamp changed, and reports each distinct failure once, so that
// a broken file is logged and counted once rather than at every poll.
type textWatch struct {
	store  textStore
	stamp  textStamp
	failed string
}

// changed returns the content when the store changed since the last call
// that returned it. An I/O error leaves the stamp alone, so the next poll
// tries again.
func (w *textWatch) changed() (data []byte, exists, changed bool, err error) {
	if s, err := w.store.stamp(); err == nil && s == w.stamp {
		return nil, false, false, nil
	}
	data, stamp, exists, err := w.store.load()
	if err != nil {
		return nil, false, false, err
	}
	w.stamp = stamp
	return data, exists, true, nil
}

// fail reports whether err is a new failure, worth a log line and a count.
func (w *textWatch) fail(err error) bool {
	msg := err.Error()
	if msg == w.failed {
		return false
	}
	w.failed = msg
	return true
}

// ok records that the store's content was taken into service.
func (w *textWatch) ok() { w.failed = "" }
