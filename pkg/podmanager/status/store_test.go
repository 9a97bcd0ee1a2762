package status

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func pod(ns, name, uid string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("u-" + uid)}}
}

func TestStoreVersionBumpsOnlyOnChange(t *testing.T) {
	s := NewStore()
	p := pod("default", "a", "1")
	if !s.Set(p, v1.PodStatus{Phase: v1.PodPending}) {
		t.Fatal("first Set must report a change")
	}
	if s.Set(p, v1.PodStatus{Phase: v1.PodPending}) {
		t.Fatal("identical Set must not report a change")
	}
	s.Set(p, v1.PodStatus{Phase: v1.PodRunning})
	got, ver, ok := s.Get(p.UID)
	if !ok || ver != 2 || got.Status.Phase != v1.PodRunning {
		t.Fatalf("Get = %v %d %v, want Running at version 2", got.Status.Phase, ver, ok)
	}
}

func TestStoreHandsOutCopies(t *testing.T) {
	s := NewStore()
	p := pod("default", "a", "1")
	s.Set(p, v1.PodStatus{Phase: v1.PodPending})
	got, _, _ := s.Get(p.UID)
	got.Status.Phase = v1.PodFailed
	again, _, _ := s.Get(p.UID)
	if again.Status.Phase != v1.PodPending {
		t.Fatal("a caller's edit leaked into the store")
	}
}

func TestStoreListSortedAndDelete(t *testing.T) {
	s := NewStore()
	s.Set(pod("kube-system", "z", "1"), v1.PodStatus{})
	s.Set(pod("default", "b", "2"), v1.PodStatus{})
	s.Set(pod("default", "a", "3"), v1.PodStatus{})
	var names []string
	for _, p := range s.List() {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	want := []string{"default/a", "default/b", "kube-system/z"}
	if len(names) != 3 || names[0] != want[0] || names[1] != want[1] || names[2] != want[2] {
		t.Fatalf("List order = %v, want %v", names, want)
	}
	s.Delete("u-2")
	if len(s.List()) != 2 {
		t.Fatal("Delete did not remove the pod")
	}
}
