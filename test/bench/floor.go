package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodeagent/nodeagent/pkg/cri"
	"github.com/nodeagent/nodeagent/pkg/podmanager"
)

// labelFloor marks the floor's sandboxes; they carry no agent node label, so no agent ever
// adopts or terminates them.
const labelFloor = "io.nodeagent.bench"

// floor creates the bench pod by direct CRI calls, with the config the agent would build for
// it (metadata, log directory, host DNS, labels and annotations, namespace options,
// resources): the fastest any agent could start it on this runtime.
type floor struct {
	rt      *cri.Client
	image   *runtimeapi.ImageSpec // by image ID, as the agent passes it after ImageStatus
	logsDir string
	dns     *runtimeapi.DNSConfig
}

func newFloor(ctx context.Context, rt *cri.Client, image, logsDir string) (*floor, error) {
	img, err := rt.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: image})
	if err != nil {
		return nil, fmt.Errorf("image status %s: %w", image, err)
	}
	if img == nil {
		return nil, fmt.Errorf("image %s is not in the runtime", image)
	}
	dns, err := podmanager.ReadResolvConf("/etc/resolv.conf")
	if err != nil {
		return nil, err
	}
	return &floor{
		rt:      rt,
		image:   &runtimeapi.ImageSpec{Image: img.Id, UserSpecifiedImage: image},
		logsDir: logsDir,
		dns:     dns,
	}, nil
}

// start runs one pod and returns its sample: from just before RunPodSandbox to the
// container's StartedAt, both on the runtime's clock side of the machine.
func (f *floor) start(ctx context.Context, name string) (startSample, error) {
	uid := newUID()
	sbCfg := f.sandboxConfig(name, uid)
	ctCfg := f.containerConfig(name, uid)
	if err := os.MkdirAll(sbCfg.LogDirectory, 0o755); err != nil {
		return startSample{}, err
	}

	t0 := time.Now()
	sbID, err := f.rt.RunPodSandbox(ctx, sbCfg, "")
	if err != nil {
		return startSample{}, fmt.Errorf("floor pod %s: %w", name, err)
	}
	s := startSample{pod: name, t0: t0, sandboxID: sbID}
	fail := func(err error) (startSample, error) {
		_ = f.remove(context.WithoutCancel(ctx), s)
		return startSample{}, fmt.Errorf("floor pod %s: %w", name, err)
	}
	cID, err := f.rt.CreateContainer(ctx, sbID, ctCfg, sbCfg)
	if err != nil {
		return fail(err)
	}
	if err := f.rt.StartContainer(ctx, cID); err != nil {
		return fail(err)
	}
	st, err := f.rt.ContainerStatus(ctx, cID, false)
	if err != nil {
		return fail(err)
	}
	s.containerIDs = []string{cID}
	s.started = time.Unix(0, st.GetStatus().GetStartedAt())
	return s, nil
}

// remove stops and removes the pod, as the agent does for a deleted manifest, and its logs.
func (f *floor) remove(ctx context.Context, s startSample) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := f.rt.StopPodSandbox(ctx, s.sandboxID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := f.rt.RemovePodSandbox(ctx, s.sandboxID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

func (f *floor) sandboxConfig(name, uid string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(f.logsDir, fmt.Sprintf("default_%s_%s", name, uid)),
		DnsConfig:    f.dns,
		Labels: map[string]string{
			"app":                 "bench",
			cri.LabelPodName:      name,
			cri.LabelPodNamespace: "default",
			cri.LabelPodUID:       uid,
			labelFloor:            "floor",
		},
		Annotations: map[string]string{cri.AnnotationPodTerminationGracePeriod: "0"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaceOptions()},
		},
	}
}

func (f *floor) containerConfig(name, uid string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: benchContainer},
		Image:    f.image,
		Command:  sleepCommand,
		Labels: map[string]string{
			cri.LabelPodName:       name,
			cri.LabelPodNamespace:  "default",
			cri.LabelPodUID:        uid,
			cri.LabelContainerName: benchContainer,
			labelFloor:             "floor",
		},
		Annotations: map[string]string{
			cri.AnnotationRestartCount:              "0",
			cri.AnnotationTerminationMessagePath:    "/dev/termination-log",
			cri.AnnotationTerminationMessagePolicy:  "File",
			cri.AnnotationPodTerminationGracePeriod: "0",
		},
		LogPath: filepath.Join(benchContainer, "0.log"),
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       &runtimeapi.LinuxContainerResources{CpuShares: 2},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions()},
		},
	}
}

// namespaceOptions are the kubelet's defaults for a pod without host namespaces.
func namespaceOptions() *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_POD,
		Pid:     runtimeapi.NamespaceMode_CONTAINER,
		Ipc:     runtimeapi.NamespaceMode_POD,
	}
}

// newUID is a random UUID-shaped pod UID.
func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
