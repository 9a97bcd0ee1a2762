package volume

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
)

func secretVolume(name string, src v1.SecretVolumeSource) v1.Volume {
	return v1.Volume{Name: name, VolumeSource: v1.VolumeSource{Secret: &src}}
}

func TestSecretVolumeIsWrittenOnTmpfs(t *testing.T) {
	env := newTestEnv(t)
	env.source.setSecret("default", "db", map[string]string{"user": "admin", "password": "hunter2"})
	pod := testPod(secretVolume("creds", v1.SecretVolumeSource{SecretName: "db", Items: []v1.KeyToPath{
		{Key: "password", Path: "pw", Mode: ptr[int32](0o400)},
	}}))
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	dir := env.volDir(pod, pluginSecret, "creds")
	if size, ok := env.mounter.size(dir); !ok || size != 0 {
		t.Fatalf("secret volume tmpfs: mounted=%v size=%d, want mounted without limit", ok, size)
	}
	if got := readVolume(t, dir); !maps.Equal(got, map[string]string{"pw": "hunter2"}) {
		t.Fatalf("files = %v", got)
	}
	if m := fileMode(t, dir+"/pw"); m != 0o400 {
		t.Fatalf("mode = %#o, want 0400", m)
	}
	// A second sync neither remounts nor rewrites.
	calls := env.mounter.calls
	gen, _ := os.Readlink(dir + "/..data")
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if gen2, _ := os.Readlink(dir + "/..data"); gen2 != gen || env.mounter.calls != calls {
		t.Fatalf("unchanged secret: generation %s -> %s, mounts %d -> %d", gen, gen2, calls, env.mounter.calls)
	}
}

func TestSecretNeverWrittenWhenTmpfsFails(t *testing.T) {
	env := newTestEnv(t)
	env.mounter.mountErr = errors.New("operation not permitted")
	env.source.setSecret("default", "db", map[string]string{"password": "hunter2"})
	pod := testPod(secretVolume("creds", v1.SecretVolumeSource{SecretName: "db"}))
	if _, err := env.m.SetUp(context.Background(), pod); err == nil || !strings.Contains(err.Error(), "mount tmpfs") {
		t.Fatalf("SetUp error = %v, want the mount failure", err)
	}
	entries, _ := os.ReadDir(env.volDir(pod, pluginSecret, "creds"))
	if len(entries) != 0 {
		t.Fatalf("secret written to disk without its tmpfs: %v", entries)
	}
}

func TestMissingSecretIsNotFoundUnlessOptional(t *testing.T) {
	env := newTestEnv(t)
	pod := testPod(secretVolume("creds", v1.SecretVolumeSource{SecretName: "db"}))
	_, err := env.m.SetUp(context.Background(), pod)
	if !errdefs.IsNotFound(err) || err.Error() != `volume "creds": secret "db" not found` {
		t.Fatalf("SetUp error = %v, want NotFound `volume \"creds\": secret \"db\" not found`", err)
	}
	pod = testPod(secretVolume("creds", v1.SecretVolumeSource{SecretName: "db", Optional: ptr(true)}))
	if _, err := env.m.SetUp(context.Background(), pod); err != nil {
		t.Fatalf("optional missing secret: %v", err)
	}
	if got := readVolume(t, env.volDir(pod, pluginSecret, "creds")); len(got) != 0 {
		t.Fatalf("files = %v, want an empty volume", got)
	}
}
