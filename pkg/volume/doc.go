// Package volume owns pod volumes: per-pod host directories under
// <root-dir>/pods/<uid>/volumes/<plugin>/<name>, set up before the sandbox, handed to CRI as
// mounts, and torn down after the sandbox is removed.
//
// Plugins, with the kubelet's directory names:
//
//	emptyDir     kubernetes.io~empty-dir    a directory (0777), or a tmpfs for medium: Memory
//	hostPath     (none)                     the host path itself, after its type check
//	configMap    kubernetes.io~configmap    atomic writer, on disk
//	secret       kubernetes.io~secret       atomic writer, on a tmpfs (never touches disk)
//	downwardAPI  kubernetes.io~downward-api atomic writer, on disk
//	projected    kubernetes.io~projected    atomic writer, on a tmpfs when it holds a secret
//
// The atomic writer (atomic_writer.go) is the kubelet's: a volume directory looks like
//
//	..2024_01_02_15_04_05.123456/key    the payload of one generation
//	..data -> ..2024_01_02_15_04_05.123456
//	key    -> ..data/key                what containers open
//
// A new generation is written into a fresh timestamped directory and published by renaming a
// new ..data symlink over the old one, so a reader resolves either the old generation or the
// new one, never a mix. SetUp is level-triggered: each call (every pod sync) compares what is
// on disk with what the sources say now and writes a generation only when they differ, so
// updates reach running pods without a restart; subPath mounts of these volumes are resolved to
// the generation's file at container creation and do not follow updates, as in Kubernetes.
//
// Nothing is kept in memory: SetUp repairs whatever a crash left half done (a generation
// without ..data, a missing user-visible link, an unmounted tmpfs) and TearDown works from the
// directory tree alone, unmounting the tmpfs volumes and then removing the pod directory
// without following symlinks or crossing into another filesystem.
//
// Calls for different pods may run concurrently; calls for one pod must not overlap (the pod
// worker serialises them).
//
// subPath mounts (subpath.go) never reach the runtime as a path inside a volume a container can
// write: the path is resolved (symlinks must stay inside the volume), opened again one component
// at a time without following symlinks, and that descriptor is bind-mounted onto a staging path,
//
//	<root-dir>/pods/<uid>/volume-subpaths/<volume>/<container>/<mount index>
//
// which is what CRI gets (the kubelet's answer to CVE-2017-1002101, with its layout). A
// container swapping a directory for a symlink can then only make a container creation fail,
// never redirect a mount. Staging paths are re-bound at each container creation and unmounted
// by TearDown (and so by the orphan sweep after a crash) before anything is removed.
package volume
