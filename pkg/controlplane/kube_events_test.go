package controlplane

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodeagent/nodeagent/pkg/controlplane/kubeclient/kubeclienttest"
)

// TestEventSinkWritesInTheEventsNamespace: the broadcaster's writes land in each event's own
// namespace (the agent's pods span namespaces), and updates and patches find the event again.
func TestEventSinkWritesInTheEventsNamespace(t *testing.T) {
	cs := fake.NewClientset()
	sink := eventSink{kubeclienttest.Wrap(cs)}
	ev := &v1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "team-a"}, Reason: "Started", Count: 1}
	if _, err := sink.Create(ev); err != nil {
		t.Fatal(err)
	}
	ev.Count = 2
	if _, err := sink.Update(ev); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Patch(ev, []byte(`{"count":3}`)); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Events("team-a").Get(context.Background(), "web.1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 3 || got.Reason != "Started" {
		t.Errorf("stored event %+v", got)
	}
}
