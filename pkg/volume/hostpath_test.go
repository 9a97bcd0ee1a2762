package volume

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestHostPathTypeChecks(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "file"), "x")
	// A unix socket path must be short: make it in a short temp dir.
	sockDir, err := os.MkdirTemp("", "hp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	tests := []struct {
		name    string
		path    string
		typ     v1.HostPathType
		wantErr string
		check   func(t *testing.T)
	}{
		{name: "unset accepts anything, even absent", path: filepath.Join(dir, "absent"), typ: v1.HostPathUnset},
		{name: "Directory on a directory", path: dir, typ: v1.HostPathDirectory},
		{name: "Directory on a file", path: filepath.Join(dir, "file"), typ: v1.HostPathDirectory,
			wantErr: "hostPath type check failed: " + filepath.Join(dir, "file") + " is not a directory (type Directory: it is a file)"},
		{name: "Directory absent", path: filepath.Join(dir, "absent"), typ: v1.HostPathDirectory,
			wantErr: "is not a directory (type Directory: it does not exist)"},
		{name: "DirectoryOrCreate creates it", path: filepath.Join(dir, "made/deep"), typ: v1.HostPathDirectoryOrCreate,
			check: func(t *testing.T) {
				if m := fileMode(t, filepath.Join(dir, "made/deep")); m != 0o755 {
					t.Errorf("created directory mode %#o, want 0755", m)
				}
			}},
		{name: "DirectoryOrCreate on a file", path: filepath.Join(dir, "file"), typ: v1.HostPathDirectoryOrCreate, wantErr: "is not a directory"},
		{name: "File on a file", path: filepath.Join(dir, "file"), typ: v1.HostPathFile},
		{name: "File on a directory", path: dir, typ: v1.HostPathFile, wantErr: "is not a file (type File: it is a directory)"},
		{name: "FileOrCreate creates it", path: filepath.Join(dir, "new.txt"), typ: v1.HostPathFileOrCreate,
			check: func(t *testing.T) {
				fi, err := os.Stat(filepath.Join(dir, "new.txt"))
				if err != nil || !fi.Mode().IsRegular() {
					t.Errorf("FileOrCreate left %v, %v", fi, err)
				}
			}},
		{name: "FileOrCreate does not create the parent", path: filepath.Join(dir, "nodir/new.txt"), typ: v1.HostPathFileOrCreate,
			wantErr: "its parent directory must exist"},
		{name: "Socket on a socket", path: sock, typ: v1.HostPathSocket},
		{name: "Socket on a file", path: filepath.Join(dir, "file"), typ: v1.HostPathSocket, wantErr: "is not a socket file (type Socket: it is a file)"},
		{name: "CharDevice on /dev/null", path: "/dev/null", typ: v1.HostPathCharDev},
		{name: "CharDevice on a directory", path: dir, typ: v1.HostPathCharDev, wantErr: "is not a character device (type CharDevice: it is a directory)"},
		{name: "BlockDevice on /dev/null", path: "/dev/null", typ: v1.HostPathBlockDev, wantErr: "is not a block device (type BlockDevice: it is a character device)"},
		{name: "an unknown type", path: dir, typ: "Fifo", wantErr: `unknown type "Fifo"`},
		{name: "a relative path", path: "var/log", typ: v1.HostPathUnset, wantErr: `hostPath "var/log" must be an absolute path`},
		{name: "a path with ..", path: dir + "/../x", typ: v1.HostPathUnset, wantErr: "must not contain '..'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			pod := testPod(v1.Volume{Name: "host", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: tc.path, Type: ptr(tc.typ)}}})
			paths, err := env.m.SetUp(context.Background(), pod)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), `volume "host": `) {
					t.Fatalf("SetUp error = %v, want `volume \"host\": ...%s`", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if paths["host"] != tc.path {
				t.Fatalf("path = %q, want %q", paths["host"], tc.path)
			}
			if tc.check != nil {
				tc.check(t)
			}
			if _, err := os.Stat(filepath.Join(env.root, "pods", "uid-1", "volumes")); !os.IsNotExist(err) {
				t.Errorf("hostPath made a volume directory: %v", err)
			}
		})
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
