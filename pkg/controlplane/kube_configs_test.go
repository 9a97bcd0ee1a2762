package controlplane

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient/kubeclienttest"
	"github.com/nodeagent/nodeagent/pkg/volume"
)

// The API sources have the consumer's method sets.
var (
	_ volume.ConfigSource = (*KubeConfigs)(nil)
	_ volume.ConfigSource = (*MergedConfigs)(nil)
	_ volume.TokenSource  = (*Tokens)(nil)
)

// apiTestWait bounds every wait for something a goroutine of the code under test does.
const apiTestWait = 10 * time.Second

// openedWatch is one watch the code under test opened on the fake API server; the test
// drives it through w.
type openedWatch struct {
	resource, namespace, fieldSelector, resourceVersion string
	w                                                   *watch.FakeWatcher
}

// kubeConfigsHarness is a KubeConfigs on a fake clientset whose watches the test drives by
// hand: the fake's own watches do not honour field selectors, these are one per object.
type kubeConfigsHarness struct {
	client  *fake.Clientset
	clock   *testingclock.FakeClock
	k       *KubeConfigs
	opened  chan openedWatch
	changes chan struct{}
	logs    *logtest.Hook
	cancel  context.CancelFunc
	done    chan struct{}
}

func newKubeConfigsHarness(t *testing.T, objects ...runtime.Object) *kubeConfigsHarness {
	t.Helper()
	h := &kubeConfigsHarness{
		client:  fake.NewClientset(objects...),
		clock:   testingclock.NewFakeClock(time.Unix(1_700_000_000, 0)),
		opened:  make(chan openedWatch, 100),
		changes: make(chan struct{}, 100),
	}
	h.client.PrependWatchReactor("*", func(action clienttesting.Action) (bool, watch.Interface, error) {
		wa := action.(clienttesting.WatchAction)
		fw := watch.NewFake()
		h.opened <- openedWatch{
			resource:        action.GetResource().Resource,
			namespace:       action.GetNamespace(),
			fieldSelector:   wa.GetWatchRestrictions().Fields.String(),
			resourceVersion: wa.GetWatchRestrictions().ResourceVersion,
			w:               fw,
		}
		return true, fw, nil
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	h.logs = logtest.NewLocal(log)
	k, err := NewKubeConfigs(KubeConfigsConfig{
		Client:         kubeclienttest.Wrap(h.client),
		Log:            logrus.NewEntry(log),
		OnChange:       func() { h.changes <- struct{}{} },
		Clock:          h.clock,
		BackoffInitial: time.Second,
		BackoffMax:     time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.k = k
	return h
}

// run starts Run; the test's cleanup stops it and checks that it returns.
func (h *kubeConfigsHarness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		h.k.Run(ctx)
	}()
	t.Cleanup(func() { h.stop(t) })
}

func (h *kubeConfigsHarness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(apiTestWait):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// nextWatch waits for the next watch the code opens.
func (h *kubeConfigsHarness) nextWatch(t *testing.T) openedWatch {
	t.Helper()
	select {
	case ow := <-h.opened:
		return ow
	case <-time.After(apiTestWait):
		t.Fatal("no watch was opened")
	}
	return openedWatch{}
}

// watchesOf waits for n watches and returns them keyed "resource namespace fieldSelector".
func (h *kubeConfigsHarness) watchesOf(t *testing.T, n int) map[string]openedWatch {
	t.Helper()
	out := map[string]openedWatch{}
	for range n {
		ow := h.nextWatch(t)
		out[ow.resource+" "+ow.namespace+" "+ow.fieldSelector] = ow
	}
	return out
}

// waitChange waits for one OnChange call.
func (h *kubeConfigsHarness) waitChange(t *testing.T) {
	t.Helper()
	select {
	case <-h.changes:
	case <-time.After(apiTestWait):
		t.Fatal("OnChange was not called")
	}
}

// noChange checks that OnChange has not been called (beyond those already waited for).
func (h *kubeConfigsHarness) noChange(t *testing.T) {
	t.Helper()
	select {
	case <-h.changes:
		t.Fatal("OnChange was called")
	default:
	}
}

// count is how many requests of verb on resource the fake API server has served.
func (h *kubeConfigsHarness) count(verb, resource string) int {
	n := 0
	for _, a := range h.client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

// waitClockWaiters waits until a goroutine waits on the fake clock (a backoff).
func (h *kubeConfigsHarness) waitClockWaiters(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(apiTestWait)
	for !h.clock.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("nothing waits on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

func apiConfigMap(ns, name, rv string, data map[string]string) *v1.ConfigMap {
	return &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: k8stypes.UID("cm-uid-" + name), ResourceVersion: rv}, Data: data}
}

func apiSecret(ns, name, rv string, data map[string]string) *v1.Secret {
	b := map[string][]byte{}
	for k, v := range data {
		b[k] = []byte(v)
	}
	return &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: k8stypes.UID("sec-uid-" + name), ResourceVersion: rv}, Data: b}
}

// podUsing is a pod in ns that mounts ConfigMap cm and takes env from Secret sec.
func podUsing(ns, uid, cm, sec string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p-" + uid, UID: k8stypes.UID("uid-" + uid)},
		Spec: v1.PodSpec{
			Volumes: []v1.Volume{{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
				LocalObjectReference: v1.LocalObjectReference{Name: cm}}}}},
			Containers: []v1.Container{{Name: "c", EnvFrom: []v1.EnvFromSource{{SecretRef: &v1.SecretEnvSource{
				LocalObjectReference: v1.LocalObjectReference{Name: sec}}}}}},
		},
	}
}

func TestKubeConfigsWatchesReferencedObjectsByName(t *testing.T) {
	h := newKubeConfigsHarness(t,
		apiConfigMap("ns", "cfg", "10", map[string]string{"k": "v1"}),
		apiConfigMap("ns", "other", "11", map[string]string{"k": "other"}),
		apiSecret("ns", "sec", "12", map[string]string{"password": "hunter2"}))
	h.k.Track([]*v1.Pod{podUsing("ns", "a", "cfg", "sec"), podUsing("ns", "b", "cfg", "sec")})
	h.run(t)

	ws := h.watchesOf(t, 2)
	cmw, ok1 := ws["configmaps ns metadata.name=cfg"]
	_, ok2 := ws["secrets ns metadata.name=sec"]
	if !ok1 || !ok2 {
		t.Fatalf("watches = %v, want one of configmap ns/cfg and one of secret ns/sec, by name", slices.Collect(maps.Keys(ws)))
	}
	// Each watch listed its object first: both exist, so two changes.
	h.waitChange(t)
	h.waitChange(t)
	if n := h.count("list", "configmaps"); n != 1 {
		t.Errorf("configmap lists = %d, want 1", n)
	}

	cm, err := h.k.GetConfigMap("ns", "cfg")
	if err != nil || cm.Data["k"] != "v1" {
		t.Fatalf("GetConfigMap = %v, %v; want data k=v1", cm, err)
	}
	sec, err := h.k.GetSecret("ns", "sec")
	if err != nil || string(sec.Data["password"]) != "hunter2" {
		t.Fatalf("GetSecret = %v, %v; want password=hunter2", sec, err)
	}
	if n := h.count("get", "configmaps") + h.count("get", "secrets"); n != 0 {
		t.Errorf("synced lookups made %d GETs, want 0: they must be served from the watches", n)
	}
	// Lookups hand out copies.
	cm.Data["k"] = "scribbled"
	if cm, _ := h.k.GetConfigMap("ns", "cfg"); cm.Data["k"] != "v1" {
		t.Fatal("a caller's edit of a returned ConfigMap changed the served one")
	}

	// An edit reaches lookups and calls OnChange.
	cmw.w.Modify(apiConfigMap("ns", "cfg", "20", map[string]string{"k": "v2"}))
	h.waitChange(t)
	if cm, err := h.k.GetConfigMap("ns", "cfg"); err != nil || cm.Data["k"] != "v2" {
		t.Fatalf("after an edit GetConfigMap = %v, %v; want k=v2", cm, err)
	}

	// An event about another object (a server ignoring the selector) changes nothing; the
	// deletion that follows is the only change seen.
	cmw.w.Modify(apiConfigMap("ns", "other", "21", map[string]string{"k": "x"}))
	cmw.w.Delete(apiConfigMap("ns", "cfg", "22", nil))
	h.waitChange(t)
	h.noChange(t)
	_, err = h.k.GetConfigMap("ns", "cfg")
	if !errdefs.IsNotFound(err) || err.Error() != `configmap "cfg" not found` {
		t.Fatalf("after a delete GetConfigMap error = %v, want NotFound `configmap \"cfg\" not found`", err)
	}
	if n := h.count("get", "configmaps"); n != 0 {
		t.Errorf("a lookup of a deleted watched object made %d GETs, want 0", n)
	}

	// Recreated: served again.
	cmw.w.Add(apiConfigMap("ns", "cfg", "23", map[string]string{"k": "v3"}))
	h.waitChange(t)
	if cm, err := h.k.GetConfigMap("ns", "cfg"); err != nil || cm.Data["k"] != "v3" {
		t.Fatalf("after re-creation GetConfigMap = %v, %v; want k=v3", cm, err)
	}
}

func TestKubeConfigsStopsWatchesOfObjectsNoPodReferences(t *testing.T) {
	h := newKubeConfigsHarness(t, apiConfigMap("ns", "cfg", "1", map[string]string{"k": "v"}), apiSecret("ns", "sec", "2", nil))
	h.k.Track([]*v1.Pod{podUsing("ns", "a", "cfg", "sec")})
	h.run(t)
	ws := h.watchesOf(t, 2)
	h.waitChange(t)
	h.waitChange(t)

	// Only the secret is still referenced.
	h.k.Track([]*v1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b", UID: "uid-b"},
		Spec: v1.PodSpec{ImagePullSecrets: []v1.LocalObjectReference{{Name: "sec"}}}}})
	cmw := ws["configmaps ns metadata.name=cfg"].w
	deadline := time.Now().Add(apiTestWait)
	for !cmw.IsStopped() {
		if time.Now().After(deadline) {
			t.Fatal("the watch of a ConfigMap no pod references was not stopped")
		}
		time.Sleep(time.Millisecond)
	}
	if ws["secrets ns metadata.name=sec"].w.IsStopped() {
		t.Fatal("the watch of a still referenced Secret was stopped")
	}
	// The untracked ConfigMap is now read from the API server.
	if cm, err := h.k.GetConfigMap("ns", "cfg"); err != nil || cm.Data["k"] != "v" {
		t.Fatalf("GetConfigMap of an untracked object = %v, %v", cm, err)
	}
	if n := h.count("get", "configmaps"); n != 1 {
		t.Errorf("GETs of the untracked ConfigMap = %d, want 1", n)
	}
	select {
	case ow := <-h.opened:
		t.Fatalf("a lookup of an untracked object opened a watch: %+v", ow)
	default:
	}
}

func TestKubeConfigsLookupsBeforeSyncGetFromTheAPI(t *testing.T) {
	h := newKubeConfigsHarness(t, apiConfigMap("ns", "cfg", "1", map[string]string{"k": "v"}))
	h.client.PrependReactor("get", "secrets", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.(clienttesting.GetAction).GetName() != "private" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "private",
			errors.New(`no relationship found between node 'n1' and this object`))
	})
	// Tracked, but Run has not started: nothing is synced.
	h.k.Track([]*v1.Pod{podUsing("ns", "a", "cfg", "sec")})

	tests := []struct {
		name          string
		get           func() (any, error)
		wantErr       string
		wantNotFound  bool
		wantForbidden bool
	}{
		{"tracked and present", func() (any, error) { return h.k.GetConfigMap("ns", "cfg") }, "", false, false},
		{"tracked and absent", func() (any, error) { return h.k.GetSecret("ns", "sec") }, `secret "sec" not found`, true, false},
		{"untracked and absent", func() (any, error) { return h.k.GetConfigMap("ns", "nope") }, `configmap "nope" not found`, true, false},
		{"untracked and forbidden", func() (any, error) { return h.k.GetSecret("ns", "private") },
			`get secret ns/private: secrets "private" is forbidden: no relationship found between node 'n1' and this object`, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.get()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error = %v, want %s", err, tc.wantErr)
			}
			if errdefs.IsNotFound(err) != tc.wantNotFound || apierrors.IsForbidden(err) != tc.wantForbidden {
				t.Fatalf("IsNotFound = %v, IsForbidden = %v; want %v, %v", errdefs.IsNotFound(err), apierrors.IsForbidden(err), tc.wantNotFound, tc.wantForbidden)
			}
		})
	}
	if n := h.count("get", "configmaps") + h.count("get", "secrets"); n != 4 {
		t.Errorf("GETs = %d, want 4 (one per lookup)", n)
	}
	if n := h.count("list", "configmaps") + h.count("watch", "configmaps"); n != 0 {
		t.Errorf("lookups listed or watched %d times, want 0: only Run watches", n)
	}
}

func TestKubeConfigsRetriesWithBackoffAndLogsEachErrorOnce(t *testing.T) {
	h := newKubeConfigsHarness(t, apiConfigMap("ns", "cfg", "1", map[string]string{"k": "v"}))
	var mu sync.Mutex
	failures := 3
	h.client.PrependReactor("list", "configmaps", func(clienttesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	h.k.Track([]*v1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", UID: "uid-a"}, Spec: v1.PodSpec{
		Containers: []v1.Container{{Name: "c", Env: []v1.EnvVar{{Name: "K", ValueFrom: &v1.EnvVarSource{
			ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "k"}}}}}}}}})
	h.run(t)

	for i := 1; i <= 3; i++ {
		h.waitClockWaiters(t)
		if n := h.count("list", "configmaps"); n != i {
			t.Fatalf("lists before backoff %d = %d, want %d", i, n, i)
		}
		select {
		case ow := <-h.opened:
			t.Fatalf("a watch opened before the list succeeded: %+v", ow)
		default:
		}
		h.clock.Step(2 * time.Second) // past the backoff, jitter included
	}
	h.nextWatch(t)
	h.waitChange(t)

	var warns, infos []string
	for _, e := range h.logs.AllEntries() {
		switch e.Level {
		case logrus.WarnLevel:
			warns = append(warns, e.Message)
		case logrus.InfoLevel:
			infos = append(infos, e.Message)
		}
	}
	if len(warns) != 1 || len(infos) != 1 {
		t.Fatalf("warnings %q, infos %q; want one warning for three identical failures and one recovery line", warns, infos)
	}
}

func TestKubeConfigsRewatchesFromLastVersionAndRelistsWhenExpired(t *testing.T) {
	h := newKubeConfigsHarness(t, apiConfigMap("ns", "cfg", "1", map[string]string{"k": "v"}))
	h.k.Track([]*v1.Pod{podUsing("ns", "a", "cfg", "")})
	h.run(t)
	first := h.nextWatch(t)
	h.waitChange(t)
	v7 := apiConfigMap("ns", "cfg", "7", map[string]string{"k": "v7"})
	if err := h.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("configmaps"), v7, "ns"); err != nil {
		t.Fatal(err)
	}
	first.w.Modify(v7)
	h.waitChange(t)

	// The server ends the watch (its timeout): watch again from the last version, no list.
	first.w.Stop()
	second := h.nextWatch(t)
	if second.resourceVersion != "7" {
		t.Fatalf("re-watch from resourceVersion %q, want 7", second.resourceVersion)
	}
	if n := h.count("list", "configmaps"); n != 1 {
		t.Fatalf("lists = %d, want 1", n)
	}

	// The version has expired: list again, then watch from the list.
	second.w.Error(&apierrors.NewResourceExpired("too old resource version: 7 (100)").ErrStatus)
	third := h.nextWatch(t)
	if n := h.count("list", "configmaps"); n != 2 {
		t.Fatalf("lists after an expired watch = %d, want 2", n)
	}
	if third.resourceVersion == "7" {
		t.Fatalf("after an expiry the watch restarted from the expired version")
	}
	// The list served the version the last event had: no change.
	h.noChange(t)
	if cm, _ := h.k.GetConfigMap("ns", "cfg"); cm.Data["k"] != "v7" {
		t.Fatalf("after a relist GetConfigMap data = %v, want k=v7", cm.Data)
	}
}

func TestKubeConfigsTrackBeforeRunAndAfterRun(t *testing.T) {
	h := newKubeConfigsHarness(t, apiConfigMap("ns", "cfg", "1", nil), apiConfigMap("ns", "late", "2", nil))
	h.k.Track([]*v1.Pod{podUsing("ns", "a", "cfg", "")})
	h.run(t)
	h.nextWatch(t)
	h.waitChange(t)
	// Tracked while Run runs: watched at once.
	h.k.Track([]*v1.Pod{podUsing("ns", "a", "cfg", ""), podUsing("ns", "b", "late", "")})
	if ow := h.nextWatch(t); ow.fieldSelector != "metadata.name=late" {
		t.Fatalf("watch opened for %q, want late", ow.fieldSelector)
	}
	h.waitChange(t)
	h.stop(t)
	// After Run: lookups go to the API server again.
	before := h.count("get", "configmaps")
	if _, err := h.k.GetConfigMap("ns", "cfg"); err != nil {
		t.Fatal(err)
	}
	if n := h.count("get", "configmaps"); n != before+1 {
		t.Fatalf("a lookup after Run returned made %d GETs, want 1", n-before)
	}
}

func TestReferencedConfigs(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: v1.PodSpec{
		ImagePullSecrets: []v1.LocalObjectReference{{Name: "pull"}},
		Volumes: []v1.Volume{
			{Name: "a", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "vol-cm"}}}},
			{Name: "b", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "vol-sec"}}},
			{Name: "c", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
				{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
				{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "proj-sec"}}},
				{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token"}},
			}}}},
			{Name: "d", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		},
		InitContainers: []v1.Container{{Name: "i", EnvFrom: []v1.EnvFromSource{{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "init-cm"}}}}}},
		Containers: []v1.Container{{Name: "c", Env: []v1.EnvVar{
			{Name: "A", Value: "x"},
			{Name: "B", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "env-sec"}, Key: "k"}}},
			{Name: "C", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		}}},
		EphemeralContainers: []v1.EphemeralContainer{{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "e",
			EnvFrom: []v1.EnvFromSource{{SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "eph-sec"}}}}}}},
	}}
	var got []string
	for _, r := range referencedConfigs(pod) {
		if r.namespace != "ns" {
			t.Errorf("%v: namespace %q, want the pod's", r, r.namespace)
		}
		got = append(got, r.kind+"/"+r.name)
	}
	slices.Sort(got)
	want := []string{"configmap/init-cm", "configmap/kube-root-ca.crt", "configmap/vol-cm",
		"secret/env-sec", "secret/eph-sec", "secret/proj-sec", "secret/pull", "secret/vol-sec"}
	if !slices.Equal(got, want) {
		t.Fatalf("referenced = %s\nwant         %s", strings.Join(got, " "), strings.Join(want, " "))
	}
}
