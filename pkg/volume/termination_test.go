package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTerminationMessageFileIsFreshWritableByAnyoneAndReadBounded(t *testing.T) {
	env := newTestEnv(t)
	p1, err := env.m.TerminationMessageFile("uid-1", "app")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := env.m.TerminationMessageFile("uid-1", "app")
	if err != nil {
		t.Fatal(err)
	}
	if p1 == p2 || filepath.Dir(p1) != filepath.Join(env.root, "pods", "uid-1", "containers", "app") {
		t.Fatalf("files %s and %s, want two fresh files under pods/uid-1/containers/app", p1, p2)
	}
	if mode := fileMode(t, p1); mode != 0o666 {
		t.Fatalf("mode %#o, want 0666 (the container may not run as root)", mode)
	}
	if err := os.WriteFile(p1, []byte(strings.Repeat("x", 5000)), 0o666); err != nil {
		t.Fatal(err)
	}
	if msg, err := env.m.ReadTerminationMessage(p1); err != nil || len(msg) != MaxTerminationMessage {
		t.Fatalf("read %d bytes, %v; want the first %d", len(msg), err, MaxTerminationMessage)
	}
	if msg, err := env.m.ReadTerminationMessage(filepath.Join(env.root, "gone")); err != nil || msg != "" {
		t.Fatalf("a missing file reads %q, %v; want empty", msg, err)
	}
	if _, err := env.m.TerminationMessageFile("uid-1", "../x"); err == nil {
		t.Fatal("a container name with a slash was accepted")
	}
}
