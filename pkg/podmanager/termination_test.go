package podmanager

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestTerminationMessageComesFromTheFileOrTheLogTail(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   v1.TerminationMessagePolicy
		file     string
		log      string
		exitCode int32
		want     string
	}{
		{"the file, policy File", v1.TerminationMessageReadFile, "bye", "", 0, "bye"},
		{"the file wins over the log", v1.TerminationMessageFallbackToLogsOnError, "from file", "T stdout F from log\n", 1, "from file"},
		{"the log tail when the file is empty and it failed", v1.TerminationMessageFallbackToLogsOnError, "",
			"T stdout F one\nT stderr P par\nT stderr F tial\n", 2, "one\npartial\n"},
		{"no log tail when it succeeded", v1.TerminationMessageFallbackToLogsOnError, "", "T stdout F one\n", 0, ""},
		{"no log tail under policy File", v1.TerminationMessageReadFile, "", "T stdout F one\n", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			vols := &fakeVolumes{dir: t.TempDir()}
			h.m.cfg.Volumes = vols
			c := busybox("main")
			c.TerminationMessagePath, c.TerminationMessagePolicy = "/dev/termination-log", tc.policy
			pod := testPod("job", v1.RestartPolicyNever, c)
			h.run(pod)
			h.settle(pod.UID)
			inst := h.rt.byName("main")[0]
			var file string
			for _, m := range inst.cfg.Mounts {
				if m.ContainerPath == "/dev/termination-log" {
					file = m.HostPath
				}
			}
			if file == "" {
				t.Fatalf("no mount at the terminationMessagePath: %v", inst.cfg.Mounts)
			}
			if err := os.WriteFile(file, []byte(tc.file), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(inst.status.LogPath), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(inst.status.LogPath, []byte(tc.log), 0o644); err != nil {
				t.Fatal(err)
			}
			h.rt.exit("main", tc.exitCode)
			s := h.settle(pod.UID)
			term := containerState(t, s, "main").State.Terminated
			if term == nil || term.Message != tc.want {
				t.Fatalf("terminated %+v, want message %q", term, tc.want)
			}
		})
	}
}

func TestLogTailTakesTheLastLinesThenTheFirstBytes(t *testing.T) {
	var sb strings.Builder
	for i := range 100 {
		sb.WriteString("2026-01-01T00:00:00Z stdout F line-" + strings.Repeat("y", i%7) + "\n")
	}
	p := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := logTail(p, 80, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(got, "\n"); n != 80 {
		t.Fatalf("%d lines, want the last 80", n)
	}
	if got, _ = logTail(p, 80, 10); got != "line-yyyyy" {
		t.Fatalf("limited tail %q, want the first 10 bytes of the last 80 lines", got)
	}
}

func TestInitContainerThatSucceededIsReady(t *testing.T) {
	h := newHarness(t)
	pod := testPod("init", v1.RestartPolicyAlways, busybox("main"))
	pod.Spec.InitContainers = []v1.Container{busybox("setup")}
	h.run(pod)
	h.settle(pod.UID)
	h.rt.exit("setup", 0)
	s := h.settle(pod.UID)
	if cs := containerState(t, s, "setup"); !cs.Ready || cs.State.Terminated == nil {
		t.Fatalf("init container status %+v, want terminated and ready", cs)
	}
}
