package logs

import (
	"context"
	"fmt"
	"os"
	"sync"
)

// fakeRuntime stands in for the runtime's side of a container log: it holds the open file
// and, like containerd, keeps writing through its descriptor after a rename until
// ReopenContainerLog opens the path again.
type fakeRuntime struct {
	mu     sync.Mutex
	files  map[string]*os.File // container ID -> the file being written
	paths  map[string]string   // container ID -> log path
	reopen []string            // IDs, in call order
	err    error               // returned by ReopenContainerLog when set
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{files: map[string]*os.File{}, paths: map[string]string{}}
}

// start "starts" a container writing to path.
func (f *fakeRuntime) start(id, path string) error {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[id], f.paths[id] = fh, path
	return nil
}

// write appends to the container's open file, wherever it now is.
func (f *fakeRuntime) write(id, s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.files[id].WriteString(s)
	return err
}

func (f *fakeRuntime) ReopenContainerLog(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reopen = append(f.reopen, id)
	if f.err != nil {
		return f.err
	}
	old, ok := f.files[id]
	if !ok {
		return fmt.Errorf("container %s: not found", id)
	}
	fh, err := os.OpenFile(f.paths[id], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	old.Close()
	f.files[id] = fh
	return nil
}

func (f *fakeRuntime) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fh := range f.files {
		fh.Close()
	}
}

func (f *fakeRuntime) reopens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reopen...)
}
