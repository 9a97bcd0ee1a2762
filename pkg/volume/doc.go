// Package volume will own pod volumes: per-pod host directories under
// <root-dir>/pods/<uid>/volumes/ (emptyDir, hostPath, configMap, secret, downwardAPI,
// projected), set up before the sandbox and handed to CRI as mounts.
//
// Not built yet. Until it is, a container with volumeMounts is not started silently without
// them: the pod manager reports CreateContainerConfigError naming the mount.
package volume
