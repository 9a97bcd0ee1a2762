package controlplane

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// leaseState is the lease goroutine's own state.
type leaseState struct {
	// current is the Lease as the API server last returned it, so that a renewal is one
	// update guarded by its resourceVersion; nil when it must be read (or created) again.
	current *coordinationv1.Lease
}

// renewLease is one pass of the lease loop: it makes sure the node's Lease exists
// (kube-node-lease/<node>, held by the node, owned by its Node so that deleting the Node
// deletes it) and sets its renewTime to now. A conflict or a vanished Lease makes the next
// pass read it again. A node may get, create and update only this one Lease.
func (n *NodeAgent) renewLease(ctx context.Context) error {
	leases := n.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(n.clock.Now())
	if n.lease.current == nil {
		l, err := leases.Get(ctx, n.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			created, err := leases.Create(ctx, n.leaseSpec(&coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: n.name, Namespace: v1.NamespaceNodeLease},
			}, now), metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create lease %s/%s: %w", v1.NamespaceNodeLease, n.name, err)
			}
			n.lease.current = created
			return nil
		}
		if err != nil {
			return fmt.Errorf("get lease %s/%s: %w", v1.NamespaceNodeLease, n.name, err)
		}
		n.lease.current = l
	}
	updated, err := leases.Update(ctx, n.leaseSpec(n.lease.current.DeepCopy(), now), metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			n.lease.current = nil
		}
		return fmt.Errorf("renew lease %s/%s: %w", v1.NamespaceNodeLease, n.name, err)
	}
	n.lease.current = updated
	return nil
}

// leaseSpec sets l's holder, duration and renew time, and its owner reference to the Node
// (replacing one to an earlier Node of the same name).
func (n *NodeAgent) leaseSpec(l *coordinationv1.Lease, renew metav1.MicroTime) *coordinationv1.Lease {
	holder, seconds := n.name, int32(n.leaseDuration.Seconds())
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &seconds
	l.Spec.RenewTime = &renew
	if ref, ok := n.ownerRef(); ok {
		refs := []metav1.OwnerReference{ref}
		for _, r := range l.OwnerReferences {
			if r.APIVersion != ref.APIVersion || r.Kind != ref.Kind || r.Name != ref.Name {
				refs = append(refs, r)
			}
		}
		l.OwnerReferences = refs
	}
	return l
}
