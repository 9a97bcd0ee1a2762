package nodeapi

import (
	"fmt"
	"net/http"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// httpError is an error with the status it answers.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, err error) {
	if he, ok := err.(*httpError); ok {
		http.Error(w, he.msg, he.code)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// target is the pod (and container) a request names.
type target struct {
	pod       *v1.Pod
	container string              // "" for port forwarding
	status    *v1.ContainerStatus // nil when the container has no status yet
}

func (t *target) ref() string { return t.pod.Namespace + "/" + t.pod.Name }

// findTarget validates the path's names and finds the pod and container they name among
// the node's pods. Bad names are 400; a pod or container the node does not have is 404.
func (s *Server) findTarget(r *http.Request, withContainer bool) (*target, error) {
	ns, name, uid := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("uid")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, errorf(http.StatusBadRequest, "namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, errorf(http.StatusBadRequest, "pod name %q: %s", name, strings.Join(errs, "; "))
	}
	container := ""
	if withContainer {
		container = r.PathValue("container")
		if errs := validation.IsDNS1123Label(container); len(errs) > 0 {
			return nil, errorf(http.StatusBadRequest, "container name %q: %s", container, strings.Join(errs, "; "))
		}
	}
	var pod *v1.Pod
	for _, p := range s.cfg.Pods() {
		if p.Namespace == ns && p.Name == name {
			pod = p
			break
		}
	}
	if pod == nil || (uid != "" && pod.UID != types.UID(uid)) {
		return nil, errorf(http.StatusNotFound, "pod %s/%s is not on node %s", ns, name, s.cfg.NodeName)
	}
	t := &target{pod: pod, container: container}
	if !withContainer {
		return t, nil
	}
	if !hasContainer(pod, container) {
		return nil, errorf(http.StatusNotFound, "container %q is not in pod %s/%s", container, ns, name)
	}
	for _, list := range [][]v1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == container {
				t.status = &list[i]
			}
		}
	}
	return t, nil
}

func hasContainer(pod *v1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// runtimeID is the runtime's container ID in a status's "<runtime>://<id>".
func runtimeID(containerID string) string {
	if _, id, ok := strings.Cut(containerID, "://"); ok {
		return id
	}
	return containerID
}

// runningID is the ID of the container's running instance, for exec and attach.
func (t *target) runningID() (string, error) {
	if t.status == nil || t.status.ContainerID == "" || t.status.State.Running == nil {
		state := "not started"
		if t.status != nil {
			switch st := t.status.State; {
			case st.Waiting != nil:
				state = "waiting: " + st.Waiting.Reason
			case st.Terminated != nil:
				state = "terminated: " + st.Terminated.Reason
			}
		}
		return "", errorf(http.StatusBadRequest, "container %q of pod %s is not running (%s)", t.container, t.ref(), state)
	}
	return runtimeID(t.status.ContainerID), nil
}
