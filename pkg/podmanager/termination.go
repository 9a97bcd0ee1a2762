package podmanager

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
)

// The kubelet's bounds for a message taken from the log (FallbackToLogsOnError): the last
// 80 lines, at most 2048 bytes of them.
const (
	fallbackLogLines = 80
	fallbackLogBytes = 2048
)

// terminationMessageMount gives the instance of c about to be created a fresh file at its
// terminationMessagePath, which terminationMessage reads after it exits. None without volume
// support or a path.
func (w *worker) terminationMessageMount(pod *v1.Pod, c *v1.Container) (*runtimeapi.Mount, error) {
	if c.TerminationMessagePath == "" || w.m.cfg.Volumes == nil {
		return nil, nil
	}
	p, err := w.m.cfg.Volumes.TerminationMessageFile(pod.UID, c.Name)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.Mount{ContainerPath: c.TerminationMessagePath, HostPath: p}, nil
}

// terminationMessage is what an exited container left as its message, as the kubelet reads
// it: the file mounted at its terminationMessagePath (the path and policy come from the
// instance's own annotations, so an agent restart reads the same); with
// FallbackToLogsOnError, a failed container that left none gets the tail of its log.
func (w *worker) terminationMessage(s *runtimeapi.ContainerStatus) string {
	if msg, ok := w.messages[s.Id]; ok {
		return msg // an exited instance's message cannot change
	}
	msg, err := w.readTerminationMessage(s)
	if err != nil {
		w.log.WithError(err).WithField("containerID", s.Id).Debug("reading the termination message failed")
		return msg // read again on the next status
	}
	w.messages[s.Id] = msg
	return msg
}

// readTerminationMessage reads what terminationMessage caches.
func (w *worker) readTerminationMessage(s *runtimeapi.ContainerStatus) (string, error) {
	path := s.Annotations[cri.AnnotationTerminationMessagePath]
	var msg string
	if path != "" && w.m.cfg.Volumes != nil {
		for _, m := range s.Mounts {
			if m.ContainerPath == path {
				var err error
				if msg, err = w.m.cfg.Volumes.ReadTerminationMessage(m.HostPath); err != nil {
					return "", err
				}
				break
			}
		}
	}
	if msg == "" && s.ExitCode != 0 &&
		v1.TerminationMessagePolicy(s.Annotations[cri.AnnotationTerminationMessagePolicy]) == v1.TerminationMessageFallbackToLogsOnError {
		return logTail(s.LogPath, fallbackLogLines, fallbackLogBytes)
	}
	return msg, nil
}

// logTail returns the content of the last lines of a CRI-format log file
// ("<time> <stream> <P|F> <content>"), at most limit bytes of it from its start, as the
// kubelet's tail with limitBytes does. Partial (P) entries are joined to the next one.
func logTail(path string, lines, limit int) (string, error) {
	if path == "" {
		return "", nil
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("log path %q is not absolute", path)
	}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Enough for 80 lines of ordinary output; a longer tail is cut at a line start.
	const window = 64 << 10
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(fi.Size()-window, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return "", err
	}
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	var entries [][]byte
	var partial []byte
	for _, line := range bytes.Split(buf, []byte("\n")) {
		fields := bytes.SplitN(line, []byte(" "), 4)
		if len(fields) < 4 {
			continue
		}
		partial = append(partial, fields[3]...)
		if string(fields[2]) == "P" {
			continue
		}
		entries = append(entries, append(partial, '\n'))
		partial = nil
	}
	if len(entries) > lines {
		entries = entries[len(entries)-lines:]
	}
	out := bytes.Join(entries, nil)
	if len(out) > limit {
		out = out[:limit]
	}
	return string(out), nil
}
