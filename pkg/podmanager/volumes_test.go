package podmanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeConfigs is a ConfigSource holding what a test puts in it.
type fakeConfigs struct {
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
}

func (f *fakeConfigs) GetConfigMap(ns, name string) (*v1.ConfigMap, error) {
	if cm, ok := f.cms[ns+"/"+name]; ok {
		return cm.DeepCopy(), nil
	}
	return nil, fmt.Errorf("configmap %q not found: %w", name, errdefs.ErrNotFound)
}

func (f *fakeConfigs) GetSecret(ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s.DeepCopy(), nil
	}
	return nil, fmt.Errorf("secret %q not found: %w", name, errdefs.ErrNotFound)
}

// fakeVolumes records set-ups and tear-downs; err makes SetUp fail.
type fakeVolumes struct {
	err      error
	setUps   int
	torn     []types.UID
	onDisk   []types.UID
	hostPath string
	dir      string // where TerminationMessageFile makes files
	messages int
}

func (f *fakeVolumes) SetUp(_ context.Context, pod *v1.Pod) (map[string]string, error) {
	f.setUps++
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		out[v.Name] = f.hostPath + "/" + v.Name
	}
	return out, nil
}

// Mounts maps each volumeMount to its volume's path, as the real one does without subPaths.
func (f *fakeVolumes) Mounts(_ *v1.Pod, c *v1.Container, paths map[string]string) ([]*runtimeapi.Mount, error) {
	var out []*runtimeapi.Mount
	for _, vm := range c.VolumeMounts {
		p, ok := paths[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q is not set up", vm.Name)
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: vm.MountPath, HostPath: p, Readonly: vm.ReadOnly})
	}
	return out, nil
}

// TerminationMessageFile makes a real file, so a test can write a message a container left.
func (f *fakeVolumes) TerminationMessageFile(uid types.UID, container string) (string, error) {
	if f.dir == "" {
		return "", fmt.Errorf("fakeVolumes: no dir for termination message files")
	}
	p := filepath.Join(f.dir, string(uid)+"-"+container+fmt.Sprintf("-%d", f.messages))
	f.messages++
	return p, os.WriteFile(p, nil, 0o666)
}

func (f *fakeVolumes) ReadTerminationMessage(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func (f *fakeVolumes) TearDown(uid types.UID) error {
	f.torn = append(f.torn, uid)
	return nil
}

func (f *fakeVolumes) PodsOnDisk() ([]types.UID, error) { return f.onDisk, nil }

func TestEnvFromConfigMapsSecretsAndResources(t *testing.T) {
	h := newHarness(t)
	h.m.cfg.Configs = &fakeConfigs{
		cms:     map[string]*v1.ConfigMap{"default/app": {ObjectMeta: metav1.ObjectMeta{Name: "app"}, Data: map[string]string{"mode": "fast", "LEVEL": "3", "bad key": "x"}}},
		secrets: map[string]*v1.Secret{"default/db": {ObjectMeta: metav1.ObjectMeta{Name: "db"}, Data: map[string][]byte{"password": []byte("s3cret")}}},
	}
	yes := true
	c := busybox("main")
	c.Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi"), v1.ResourceCPU: resource.MustParse("500m")}
	c.EnvFrom = []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "app"}}}}
	c.Env = []v1.EnvVar{
		{Name: "MODE", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "app"}, Key: "mode"}}},
		{Name: "PASSWORD", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "db"}, Key: "password"}}},
		{Name: "MISSING_OK", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: &yes}}},
		{Name: "MEM_MI", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "CPU", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.cpu"}}},
	}
	pod := testPod("env", v1.RestartPolicyAlways, c)
	h.run(pod)
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning {
		t.Fatalf("phase %s: %+v", s.Phase, s.ContainerStatuses[0].State)
	}
	got := map[string]string{}
	for _, kv := range h.rt.byName("main")[0].cfg.Envs {
		got[kv.Key] = string(kv.Value)
	}
	want := map[string]string{"CFG_mode": "fast", "CFG_LEVEL": "3", "MODE": "fast", "PASSWORD": "s3cret", "MEM_MI": "64", "CPU": "1"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["CFG_bad key"]; ok {
		t.Error("an invalid variable name from envFrom was kept")
	}
	if _, ok := got["MISSING_OK"]; ok {
		t.Error("an absent optional secret produced a variable")
	}
}

func TestMissingConfigKeepsThePodPendingNamingIt(t *testing.T) {
	h := newHarness(t)
	cfgs := &fakeConfigs{cms: map[string]*v1.ConfigMap{}}
	h.m.cfg.Configs = cfgs
	c := busybox("main")
	c.Env = []v1.EnvVar{{Name: "MODE", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "app"}, Key: "mode"}}}}
	pod := testPod("env", v1.RestartPolicyAlways, c)
	h.run(pod)
	s := h.settle(pod.UID)
	cs := containerState(t, s, "main")
	if s.Phase != v1.PodPending || cs.State.Waiting == nil || cs.State.Waiting.Reason != "CreateContainerConfigError" ||
		!strings.Contains(cs.State.Waiting.Message, `configmap "app" not found`) {
		t.Fatalf("phase %s, state %+v", s.Phase, cs.State)
	}
	// The ConfigMap appears: the next pass (woken by ConfigChanged) starts the container.
	cfgs.cms["default/app"] = &v1.ConfigMap{Data: map[string]string{"mode": "fast"}}
	h.m.ConfigChanged() // no clock step: a config change retries at once
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning {
		t.Fatalf("phase after the ConfigMap appeared = %s", s.Phase)
	}
}

func TestVolumesAreSetUpFirstMountedAndTornDownLast(t *testing.T) {
	h := newHarness(t)
	vols := &fakeVolumes{hostPath: "/var/lib/nodeagent/pods/x"}
	h.m.cfg.Volumes = vols
	c := busybox("main")
	c.VolumeMounts = []v1.VolumeMount{{Name: "data", MountPath: "/data", ReadOnly: true}}
	pod := testPod("vol", v1.RestartPolicyAlways, c)
	pod.Spec.Volumes = []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}}

	vols.err = fmt.Errorf(`volume "data": configmap "cfg" not found: %w`, errdefs.ErrNotFound)
	h.run(pod)
	s := h.settle(pod.UID)
	if h.rt.count("RunPodSandbox") != 0 {
		t.Fatal("a sandbox was created before the volumes were ready")
	}
	if cs := containerState(t, s, "main"); cs.State.Waiting == nil || !strings.Contains(cs.State.Waiting.Message, `configmap "cfg" not found`) {
		t.Fatalf("state = %+v, want the missing object named", cs.State)
	}
	vols.err = nil
	h.m.ConfigChanged()
	s = h.settle(pod.UID)
	if s.Phase != v1.PodRunning {
		t.Fatalf("phase = %s", s.Phase)
	}
	m := h.rt.byName("main")[0].cfg.Mounts
	if len(m) != 1 || m[0].ContainerPath != "/data" || m[0].HostPath != "/var/lib/nodeagent/pods/x/data" || !m[0].Readonly {
		t.Fatalf("mounts = %v", m)
	}
	h.run()
	h.m.workers[pod.UID].syncOnce(t.Context())
	if len(vols.torn) != 1 || vols.torn[0] != pod.UID || len(h.rt.sandboxes) != 0 {
		t.Fatalf("torn down %v with %d sandboxes left", vols.torn, len(h.rt.sandboxes))
	}
}

func TestVolumesOfGonePodsAreRemovedOnlyAfterSourcesReported(t *testing.T) {
	h := newHarness(t)
	vols := &fakeVolumes{onDisk: []types.UID{"gone"}}
	h.m.cfg.Volumes = vols
	h.m.removeOrphanVolumes()
	if len(vols.torn) != 0 {
		t.Fatal("volumes removed before the sources reported")
	}
	h.run()
	h.m.removeOrphanVolumes()
	if len(vols.torn) != 1 || vols.torn[0] != "gone" {
		t.Fatalf("torn = %v", vols.torn)
	}
}

// TestAVolumeRefreshFailureDoesNotStopARunningPod: once a pod's volumes are set up, a later
// SetUp that fails (its ConfigMap cannot be read while the API server is away) leaves them as
// they were; the pod stays ready and a crashed container is restarted, as with the kubelet.
func TestAVolumeRefreshFailureDoesNotStopARunningPod(t *testing.T) {
	h := newHarness(t)
	vols := &fakeVolumes{hostPath: "/var/lib/nodeagent/pods/x"}
	h.m.cfg.Volumes = vols
	c := busybox("main")
	c.VolumeMounts = []v1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}}
	pod := testPod("refresh", v1.RestartPolicyAlways, c)
	pod.Spec.Volumes = []v1.Volume{{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}}}
	h.run(pod)
	if s := h.settle(pod.UID); s.Phase != v1.PodRunning {
		t.Fatalf("phase = %s", s.Phase)
	}

	vols.err = fmt.Errorf(`volume "cfg": get configmap default/cfg: connect: connection refused`)
	h.rt.exit("main", 1)
	s := h.settle(pod.UID)
	if running(h, "main") != 1 || len(h.rt.byName("main")) != 2 {
		t.Fatalf("the crashed container was not restarted while its volume could not be refreshed: %d instances, %d running",
			len(h.rt.byName("main")), running(h, "main"))
	}
	if got := h.rt.byName("main"); got[len(got)-1].cfg.Mounts[0].HostPath != "/var/lib/nodeagent/pods/x/cfg" {
		t.Errorf("the restarted container mounts %v", got[len(got)-1].cfg.Mounts)
	}
	if condition(s, v1.PodReadyToStartContainers) != v1.ConditionTrue {
		t.Errorf("conditions %+v: a refresh failure must not mark the pod FailedMount", s.Conditions)
	}
	if vols.setUps < 3 {
		t.Errorf("SetUp ran %d times; the refresh must be retried", vols.setUps)
	}
}
