package podmanager

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// readinessGatesMessage is why the pod's readiness gates keep it from Ready, in the kubelet's
// words; "" when every gate's condition (written into the pod's status by someone else, a
// load balancer controller say) is True.
func readinessGatesMessage(pod *v1.Pod) string {
	var why []string
	for _, g := range pod.Spec.ReadinessGates {
		switch st := conditionStatus(pod.Status.Conditions, g.ConditionType); st {
		case v1.ConditionTrue:
		case "":
			why = append(why, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType))
		default:
			why = append(why, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %s", g.ConditionType, st))
		}
	}
	return strings.Join(why, ", ")
}

func conditionStatus(conds []v1.PodCondition, t v1.PodConditionType) v1.ConditionStatus {
	for _, c := range conds {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// sameOthersStatus reports whether the parts of the status that other writers set and the
// worker acts on are the same in a and b: a final phase (an eviction), and the conditions
// of b's readiness gates. A change there must wake the worker, unlike the status it wrote.
func sameOthersStatus(a, b *v1.Pod) bool {
	if finalPhase(a.Status.Phase) != finalPhase(b.Status.Phase) {
		return false
	}
	for _, g := range b.Spec.ReadinessGates {
		if conditionStatus(a.Status.Conditions, g.ConditionType) != conditionStatus(b.Status.Conditions, g.ConditionType) {
			return false
		}
	}
	return true
}
