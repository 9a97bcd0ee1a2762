package volume

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
)

// emptyDirMode is the kubelet's: any container user may write an emptyDir.
const emptyDirMode = 0o777

// setUpEmptyDir makes dir a directory, or for medium: Memory a tmpfs limited to sizeLimit.
func (m *Manager) setUpEmptyDir(dir string, src *v1.EmptyDirVolumeSource) (string, error) {
	switch src.Medium {
	case v1.StorageMediumDefault:
		if err := ensureDir(dir, emptyDirMode); err != nil {
			return "", err
		}
	case v1.StorageMediumMemory:
		var size int64
		if src.SizeLimit != nil {
			size = src.SizeLimit.Value()
			if size < 0 {
				return "", fmt.Errorf("emptyDir sizeLimit %s is negative", src.SizeLimit)
			}
		}
		if err := m.ensureTmpfs(dir, size, emptyDirMode); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("emptyDir medium %q is not supported (supported: \"\", Memory)", src.Medium)
	}
	return dir, nil
}
