package podmanager

import (
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// removeOrphanLogDirs removes the <ns>_<name>_<uid> log directories of pods the agent no
// longer knows. A pod's worker removes its own at termination; this catches the ones no worker
// will: a pod whose sandbox never came to exist (the agent was killed inside RunPodSandbox)
// and that was removed or replaced while the agent was down, so nothing in the runtime names
// it any more. Only once every source has reported, like removeOrphanVolumes.
func (m *Manager) removeOrphanLogDirs() {
	if m.cfg.PodLogsDir == "" {
		return
	}
	entries, err := os.ReadDir(m.cfg.PodLogsDir)
	if err != nil {
		if !os.IsNotExist(err) {
			m.log.WithError(err).Warn("listing pod log directories failed")
		}
		return
	}
	m.mu.Lock()
	ready := m.sourcesReadyLocked()
	var orphans []string
	for _, e := range entries {
		uid, ok := logDirUID(e.Name())
		if !ok || !e.IsDir() {
			continue // not a pod's log directory: not ours to judge
		}
		if _, known := m.workers[uid]; !known {
			orphans = append(orphans, e.Name())
		}
	}
	m.mu.Unlock()
	if !ready {
		return
	}
	for _, name := range orphans {
		dir := filepath.Join(m.cfg.PodLogsDir, name)
		if err := os.RemoveAll(dir); err != nil {
			m.log.WithError(err).WithField("dir", dir).Warn("removing the log directory of a gone pod failed")
			continue
		}
		m.log.WithField("dir", dir).Info("removed the log directory of a pod that is gone")
	}
}

// logDirUID is the pod UID of a log directory named <namespace>_<name>_<uid>; namespaces,
// names and UIDs never contain '_'.
func logDirUID(name string) (types.UID, bool) {
	parts := strings.Split(name, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", false
	}
	return types.UID(parts[2]), true
}
