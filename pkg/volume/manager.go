package volume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ConfigSource serves the ConfigMaps and Secrets pods reference: the manifest directory now,
// the API server later. Absent objects: an error wrapping errdefs.ErrNotFound.
type ConfigSource interface {
	GetConfigMap(namespace, name string) (*v1.ConfigMap, error)
	GetSecret(namespace, name string) (*v1.Secret, error)
}

// TokenSource issues the service-account tokens of serviceAccountToken projections, through
// the API server's TokenRequest API. It caches and rotates them itself: SetUp asks on every
// sync and writes whatever it returns, so a rotated token reaches the pod on the next sync.
type TokenSource interface {
	ServiceAccountToken(pod *v1.Pod, p *v1.ServiceAccountTokenProjection) (string, error)
}

// Plugin directory names under <root>/pods/<uid>/volumes, as the kubelet names them.
const (
	pluginEmptyDir    = "kubernetes.io~empty-dir"
	pluginConfigMap   = "kubernetes.io~configmap"
	pluginSecret      = "kubernetes.io~secret"
	pluginDownwardAPI = "kubernetes.io~downward-api"
	pluginProjected   = "kubernetes.io~projected"
)

// Config configures a Manager.
type Config struct {
	// RootDir is the agent's state directory (required); volumes live in
	// RootDir/pods/<uid>/volumes/<plugin>/<name>.
	RootDir string
	// Source serves the ConfigMaps and Secrets volumes reference (required).
	Source ConfigSource
	// Tokens issues service-account tokens for projected serviceAccountToken sources.
	// Optional: without it (no control plane) such a source is an error that says so.
	Tokens TokenSource
	// Allocatable is the node's allocatable resources: a resourceFieldRef to a limit the
	// container does not set reads it, as with the kubelet. Optional: without it such a
	// reference is an error that says so.
	Allocatable v1.ResourceList
	// Mounter mounts and unmounts tmpfs volumes. Default HostMounter().
	Mounter Mounter
	// Log is the package's logger (required).
	Log *logrus.Entry
}

// Manager sets up and tears down pod volumes. It keeps no state beyond its configuration.
type Manager struct {
	podsDir string
	source  ConfigSource
	tokens  TokenSource // nil without a control plane
	alloc   v1.ResourceList
	mounter Mounter
	log     *logrus.Entry
}

// New checks cfg and returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.RootDir == "" {
		return nil, errors.New("volume: RootDir is required")
	}
	if cfg.Source == nil {
		return nil, errors.New("volume: Source is required")
	}
	if cfg.Log == nil {
		return nil, errors.New("volume: Log is required")
	}
	root, err := filepath.Abs(cfg.RootDir)
	if err != nil {
		return nil, fmt.Errorf("volume: root dir %q: %w", cfg.RootDir, err)
	}
	m := &Manager{
		podsDir: filepath.Join(root, "pods"),
		source:  cfg.Source,
		tokens:  cfg.Tokens,
		alloc:   cfg.Allocatable,
		mounter: cfg.Mounter,
		log:     cfg.Log,
	}
	if m.mounter == nil {
		m.mounter = HostMounter()
	}
	return m, nil
}

// SetUp prepares every volume of pod and returns each volume's host path by name. It is
// idempotent and cheap when nothing changed: configMap, secret, downwardAPI and projected
// contents are rewritten (atomically) only when they differ from what is on disk. An error names
// the volume; a missing non-optional ConfigMap or Secret gives an error for which
// errdefs.IsNotFound is true, with the kubelet's message (`configmap "x" not found`).
func (m *Manager) SetUp(ctx context.Context, pod *v1.Pod) (map[string]string, error) {
	if err := checkElement("pod UID", string(pod.UID)); err != nil {
		return nil, err
	}
	paths := make(map[string]string, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		vol := &pod.Spec.Volumes[i]
		p, err := m.setUpVolume(pod, vol)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
		}
		paths[vol.Name] = p
	}
	return paths, nil
}

func (m *Manager) setUpVolume(pod *v1.Pod, vol *v1.Volume) (string, error) {
	if err := checkElement("volume name", vol.Name); err != nil {
		return "", err
	}
	src := &vol.VolumeSource
	switch {
	case src.EmptyDir != nil:
		return m.setUpEmptyDir(m.volumeDir(pod.UID, pluginEmptyDir, vol.Name), src.EmptyDir)
	case src.HostPath != nil:
		return setUpHostPath(src.HostPath)
	case src.ConfigMap != nil:
		payload, err := m.configMapVolumePayload(pod, src.ConfigMap)
		if err != nil {
			return "", err
		}
		return m.setUpAtomic(m.volumeDir(pod.UID, pluginConfigMap, vol.Name), false, payload)
	case src.Secret != nil:
		payload, err := m.secretVolumePayload(pod, src.Secret)
		if err != nil {
			return "", err
		}
		return m.setUpAtomic(m.volumeDir(pod.UID, pluginSecret, vol.Name), true, payload)
	case src.DownwardAPI != nil:
		payload, err := downwardAPIVolumePayload(pod, src.DownwardAPI, m.alloc)
		if err != nil {
			return "", err
		}
		return m.setUpAtomic(m.volumeDir(pod.UID, pluginDownwardAPI, vol.Name), false, payload)
	case src.Projected != nil:
		payload, err := m.projectedVolumePayload(pod, src.Projected)
		if err != nil {
			return "", err
		}
		return m.setUpAtomic(m.volumeDir(pod.UID, pluginProjected, vol.Name), projectsSecret(src.Projected), payload)
	}
	return "", fmt.Errorf("volume type %s is not supported (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)", volumeKind(src))
}

// setUpAtomic makes dir (a tmpfs when onTmpfs) hold exactly payload.
func (m *Manager) setUpAtomic(dir string, onTmpfs bool, payload map[string]file) (string, error) {
	if onTmpfs {
		if err := m.ensureTmpfs(dir, 0, 0o755); err != nil {
			return "", err
		}
	} else if err := ensureDir(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := writeAtomic(dir, payload); err != nil {
		return "", err
	}
	return dir, nil
}

// ensureTmpfs makes dir a tmpfs mount point with the given size limit and root mode.
func (m *Manager) ensureTmpfs(dir string, sizeBytes int64, mode os.FileMode) error {
	if err := ensureDir(dir, mode); err != nil {
		return err
	}
	mounted, err := m.mounter.IsMountPoint(dir)
	if err != nil {
		return fmt.Errorf("check mount %s: %w", dir, err)
	}
	if !mounted {
		if err := m.mounter.MountTmpfs(dir, sizeBytes); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
		}
		m.log.WithFields(logrus.Fields{"path": dir, "sizeBytes": sizeBytes}).Debug("tmpfs mounted")
		// A fresh tmpfs root is 1777; give it the volume's mode.
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	return nil
}

// ensureDir creates dir (and its parents) and gives a new dir mode, whatever the umask.
func ensureDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	err := os.Mkdir(dir, mode)
	if err == nil {
		// Set the mode once, whatever the umask; later syncs leave what containers made of it.
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if fi, err := os.Lstat(dir); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	return nil
}

func (m *Manager) podDir(uid types.UID) string {
	return filepath.Join(m.podsDir, string(uid))
}

func (m *Manager) volumeDir(uid types.UID, plugin, name string) string {
	return filepath.Join(m.podDir(uid), "volumes", plugin, name)
}

// checkElement rejects a name that cannot be one path element of its own.
func checkElement(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid %s %q: must be one non-empty path element", what, name)
	}
	return nil
}

// volumeKind names the (unsupported) type of src for an error message.
func volumeKind(src *v1.VolumeSource) string {
	switch {
	case src.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case src.Ephemeral != nil:
		return "ephemeral"
	case src.CSI != nil:
		return "csi"
	case src.NFS != nil:
		return "nfs"
	case src.Image != nil:
		return "image"
	case src.ISCSI != nil:
		return "iscsi"
	case src.GitRepo != nil:
		return "gitRepo"
	}
	return "(unknown or none)"
}
