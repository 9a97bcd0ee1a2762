package status

import (
	"sort"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
)

// Store is safe for concurrent use.
type Store struct {
	mu   sync.RWMutex
	pods map[types.UID]*entry // guarded by mu
}

type entry struct {
	pod     *v1.Pod // owned by the store; handed out only as deep copies
	version uint64
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{pods: map[types.UID]*entry{}} }

// Set records pod (spec and metadata as desired now) with status st. The version goes up only
// when the status or the pod changed. It reports whether anything changed.
func (s *Store) Set(pod *v1.Pod, st v1.PodStatus) bool {
	p := pod.DeepCopy()
	p.Status = *st.DeepCopy()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.pods[pod.UID]
	if ok && equality.Semantic.DeepEqual(e.pod, p) {
		return false
	}
	if !ok {
		e = &entry{}
		s.pods[pod.UID] = e
	}
	e.pod = p
	e.version++
	return true
}

// Get returns a copy of the pod with its latest status and that status's version.
func (s *Store) Get(uid types.UID) (*v1.Pod, uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.pods[uid]
	if !ok {
		return nil, 0, false
	}
	return e.pod.DeepCopy(), e.version, true
}

// Delete forgets a pod once it is gone from the node.
func (s *Store) Delete(uid types.UID) {
	s.mu.Lock()
	delete(s.pods, uid)
	s.mu.Unlock()
}

// List returns copies of all pods, sorted by namespace then name.
func (s *Store) List() []*v1.Pod {
	s.mu.RLock()
	out := make([]*v1.Pod, 0, len(s.pods))
	for _, e := range s.pods {
		out = append(out, e.pod.DeepCopy())
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}
