package controlplane

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient/kubeclienttest"
)

type kubeFixture struct {
	t      *testing.T
	client *fake.Clientset
	src    *KubeSource
	mu     sync.Mutex
	last   []*v1.Pod
	mine   []*v1.Pod // what the "manager" runs, with statuses
	rep    *Reporter
}

func newKubeFixture(t *testing.T, objects ...*v1.Pod) *kubeFixture {
	t.Helper()
	f := &kubeFixture{t: t}
	f.client = fake.NewClientset()
	for _, o := range objects {
		if _, err := f.client.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	logger, _ := logtest.NewNullLogger()
	src, err := NewKubeSource(KubeSourceConfig{Client: kubeclienttest.Wrap(f.client), NodeName: "n1", Log: logrus.NewEntry(logger)})
	if err != nil {
		t.Fatal(err)
	}
	f.src = src
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		_ = src.Run(ctx, func(p []*v1.Pod) {
			f.mu.Lock()
			f.last = p
			f.mu.Unlock()
		})
	}()
	f.rep = NewReporter(ReporterConfig{
		Client: kubeclienttest.Wrap(f.client), Source: src, NodeName: "n1",
		NodeUID: func() types.UID { return "node-uid" },
		Pods: func() []*v1.Pod {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.mine
		},
		Log: logrus.NewEntry(logger),
	})
	return f
}

// eventually polls cond with a deadline; the informer delivers asynchronously.
func (f *kubeFixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *kubeFixture) desired() []*v1.Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func apiPod(name string, uid types.UID, phase v1.PodPhase) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uid},
		Spec:       v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
		Status:     v1.PodStatus{Phase: phase},
	}
}

// Finished pods are served too (the manager keeps their containers for kubectl logs until
// the pod is deleted); mirror pods are not.
func TestKubeSourceServesEveryPodButMirrors(t *testing.T) {
	mirror := apiPod("static-n1", "m1", v1.PodRunning)
	mirror.Annotations = map[string]string{AnnotationMirror: "hash"}
	f := newKubeFixture(t,
		apiPod("web", "u1", v1.PodPending),
		apiPod("done", "u2", v1.PodSucceeded),
		apiPod("failed", "u3", v1.PodFailed),
		mirror,
	)
	f.eventually("the first set", func() bool { return len(f.desired()) == 3 })
	var names []string
	for _, p := range f.desired() {
		if p.Annotations[AnnotationConfigSource] != SourceKube {
			t.Fatalf("desired %s with annotations %v", p.Name, p.Annotations)
		}
		names = append(names, p.Name+"="+string(p.Status.Phase))
	}
	if got := strings.Join(names, ","); got != "done=Succeeded,failed=Failed,web=Pending" {
		t.Fatalf("desired %s", got)
	}

	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), apiPod("new", "u4", v1.PodPending), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("the new pod", func() bool { return len(f.desired()) == 4 })
}

func TestTerminatedPodBeingDeletedIsDeletedWithItsUID(t *testing.T) {
	p := apiPod("web", "u1", v1.PodRunning)
	now := metav1.Now()
	p.DeletionTimestamp = &now
	f := newKubeFixture(t, p)
	f.eventually("the first set", func() bool { return len(f.desired()) == 1 })

	// Not being deleted, or not from the API: nothing to do.
	f.src.PodTerminated(apiPod("other", "u9", v1.PodRunning))
	f.src.PodTerminated(f.desired()[0])
	f.eventually("the deletion", func() bool {
		_, err := f.client.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{})
		return err != nil
	})
	var del []string
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "delete" {
			del = append(del, a.(interface{ GetName() string }).GetName())
		}
	}
	if len(del) != 1 || del[0] != "web" {
		t.Fatalf("deletes %v, want only web", del)
	}
}

func TestReporterPatchesOnlyWhatChangedAndKeepsOthersConditions(t *testing.T) {
	p := apiPod("web", "u1", v1.PodPending)
	p.Status.Conditions = []v1.PodCondition{{Type: "DisruptionTarget", Status: v1.ConditionTrue, Reason: "Preempted"}}
	f := newKubeFixture(t, p)
	f.eventually("the first set", func() bool { return len(f.desired()) == 1 })

	mine := f.desired()[0].DeepCopy()
	start := metav1.NewTime(time.Now()) // nanoseconds: the API keeps seconds
	mine.Status = v1.PodStatus{
		Phase: v1.PodRunning, PodIP: "10.88.0.5", PodIPs: []v1.PodIP{{IP: "10.88.0.5"}}, StartTime: &start,
		ObservedGeneration: 3,
		Conditions:         []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: start, ObservedGeneration: 3}},
		ContainerStatuses:  []v1.ContainerStatus{{Name: "c", Ready: true, State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: start}}}},
	}
	f.mine = []*v1.Pod{mine}
	f.rep.pass(context.Background())

	got, err := f.client.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1.PodRunning || got.Status.PodIP != "10.88.0.5" || len(got.Status.ContainerStatuses) != 1 ||
		got.Status.ObservedGeneration != 3 {
		t.Fatalf("status not reported: %+v", got.Status)
	}
	types := map[v1.PodConditionType]bool{}
	for _, c := range got.Status.Conditions {
		types[c.Type] = true
	}
	if !types["DisruptionTarget"] || !types[v1.PodReady] {
		t.Fatalf("conditions %v: want the controller's kept beside ours", got.Status.Conditions)
	}

	// Once the API shows it, the same status (to the nanosecond) patches nothing.
	f.eventually("the informer to see the patch", func() bool {
		return f.src.Pod("default", "web").Status.Phase == v1.PodRunning
	})
	before := len(f.client.Actions())
	f.rep.pass(context.Background())
	for _, a := range f.client.Actions()[before:] {
		if a.GetVerb() == "patch" {
			t.Fatalf("an unchanged status was patched again: %v", a)
		}
	}
}

func TestReporterKeepsAMirrorPodPerStaticPod(t *testing.T) {
	f := newKubeFixture(t)
	f.eventually("the informer to sync", f.src.informer.HasSynced)
	static := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-n1", Namespace: "default", UID: "static-uid",
			Annotations: map[string]string{AnnotationConfigSource: SourceFile, AnnotationConfigHash: "static-uid"}},
		Spec:   v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.88.0.9"},
	}
	withSecret := static.DeepCopy()
	withSecret.Name, withSecret.UID = "secret-n1", "s-uid"
	withSecret.Spec.Volumes = []v1.Volume{{Name: "s", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "x"}}}}
	f.mine = []*v1.Pod{static, withSecret}
	f.rep.pass(context.Background())

	m, err := f.client.CoreV1().Pods("default").Get(context.Background(), "web-n1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no mirror pod: %v", err)
	}
	if m.Annotations[AnnotationMirror] != "static-uid" || m.Spec.NodeName != "n1" ||
		len(m.OwnerReferences) != 1 || m.OwnerReferences[0].Kind != "Node" || m.OwnerReferences[0].UID != "node-uid" {
		t.Fatalf("mirror pod %+v", m.ObjectMeta)
	}
	if _, err := f.client.CoreV1().Pods("default").Get(context.Background(), "secret-n1", metav1.GetOptions{}); err == nil {
		t.Fatal("a mirror pod was created for a static pod that references a Secret (NodeRestriction refuses those)")
	}

	// Its status follows the static pod's once the informer has it.
	f.eventually("the mirror pod in the informer", func() bool { return f.src.Pod("default", "web-n1") != nil })
	f.rep.pass(context.Background())
	m, _ = f.client.CoreV1().Pods("default").Get(context.Background(), "web-n1", metav1.GetOptions{})
	if m.Status.PodIP != "10.88.0.9" {
		t.Fatalf("mirror pod status %+v", m.Status)
	}

	// The static pod goes: so does its mirror pod.
	f.mine = nil
	f.rep.pass(context.Background())
	if _, err := f.client.CoreV1().Pods("default").Get(context.Background(), "web-n1", metav1.GetOptions{}); err == nil {
		t.Fatal("the mirror pod outlived its static pod")
	}
}
