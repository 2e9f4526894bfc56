package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/lease"
)

// Keep implements lease.Manager. A lease on a Node does not expire, so
// there is nothing to renew: Keep watches the node instead. It restores
// this package's annotations if they are edited or removed, sets the
// NetworkUnavailable=False condition once NetworkReady was called
// (and again if it is changed), and returns an error matching
// lease.ErrLeaseLost if the node is deleted or its PodCIDRs change.
//
// The annotations restored are those the last Acquire published: this
// node's own public IP, not the overwrite l.Attrs may carry. Keep answers
// another host that asks for this Node (same node name, other addresses)
// by removing its host claim, and logs the collision. If it finds another
// host's addresses published, it asks in turn: answered, the Node is lost
// (the error also matches lease.ErrIdentityCollision); not answered within
// Options.ChallengeTimeout, it restores its own.
func (m *Manager) Keep(ctx context.Context, l lease.Lease) error {
	if err := m.synced(ctx); err != nil {
		return err
	}
	ctx, cancel := m.bind(ctx)
	defer cancel()
	attrs := m.lastPublished()
	if attrs.BackendType == "" {
		attrs = l.Attrs // a lease this Manager did not acquire
	}
	delay := time.Duration(0)
	for {
		err := m.keepOnce(ctx, l, attrs)
		switch {
		case err == nil:
			m.forgetLog("keep")
			delay = recheck
		case errors.Is(err, lease.ErrLeaseLost):
			m.losses.Add(1)
			m.log.Warn("lease lost", "subnet", l.Key, "err", err)
			return err
		default:
			m.logEvery("keep", waitLogInterval, slog.LevelError, "could not check the node; retrying", "err", err)
			delay = min(max(2*delay, 500*time.Millisecond), recheck)
		}
		select {
		case <-ctx.Done():
			return m.closedOr(ctx.Err())
		case <-m.ownNode:
		case <-time.After(delay):
		}
	}
}

// keepOnce checks the node once against the lease and restores what
// drifted.
func (m *Manager) keepOnce(ctx context.Context, l lease.Lease, attrs lease.Attrs) error {
	node, err := m.lister.Get(m.node)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: node %s was deleted", lease.ErrLeaseLost, m.node)
	}
	if err != nil {
		return err
	}
	cidrs, err := podCIDRs(node)
	if err != nil {
		return fmt.Errorf("%w: %v", lease.ErrLeaseLost, err)
	}
	conf, err := m.Config(ctx)
	if err == nil {
		cidrs = keyFor(cidrs, conf)
	} else {
		cidrs = keyFor(cidrs, lease.Config{EnableIPv4: l.Key.IPv4.IsValid(), EnableIPv6: l.Key.IPv6.IsValid()})
	}
	if cidrs != l.Key {
		return fmt.Errorf("%w: node %s's PodCIDRs are now %v, the lease was for %v", lease.ErrLeaseLost, m.node, cidrs, l.Key)
	}
	takeover := false
	if h := m.holderOf(node); !m.mine(h, attrs) {
		// Another host's addresses: it took the Node over while this one
		// was away, or they were edited. Ask, as a newcomer would.
		node, takeover, err = m.holdName(ctx, node, attrs)
		if errors.Is(err, errWait) {
			return fmt.Errorf("%w: %w", lease.ErrLeaseLost, m.collisionError(h, attrs))
		}
		if err != nil {
			return err
		}
	}
	if err := m.publish(ctx, node, attrs, takeover); err != nil {
		return err
	}
	if m.networkUp.Load() && !networkAvailable(node) {
		return m.setNetworkCondition(ctx)
	}
	return nil
}

// NetworkReady implements lease.ReadyNotifier: the node's network is up,
// and Keep sets the node's NetworkUnavailable condition to False, as
// flannel does, and keeps it so, unless Options.LeaveNetworkCondition is
// set. agent.Network calls it once its datapath has converged on the
// lease; an embedder with a datapath of its own calls it likewise.
func (m *Manager) NetworkReady() {
	if m.leaveCondition {
		return
	}
	m.networkUp.Store(true)
	select {
	case m.ownNode <- struct{}{}:
	default:
	}
}

// networkAvailable reports whether the node's NetworkUnavailable condition
// is False.
func networkAvailable(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			return c.Status == corev1.ConditionFalse
		}
	}
	return false
}

// setNetworkCondition patches NetworkUnavailable=False. A strategic merge
// patch merges conditions by type, so the other conditions are untouched.
func (m *Manager) setNetworkCondition(ctx context.Context) error {
	now := metav1.Now()
	body, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
		Reason: "FlannelIsUp", Message: "weft's flanneld is running on this node",
		LastTransitionTime: now, LastHeartbeatTime: now,
	}}}})
	if err != nil {
		return err
	}
	rctx, cancel := m.request(ctx)
	defer cancel()
	if _, err := m.nodes.Patch(rctx, m.node, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		m.apiError("patch node status", err)
		return fmt.Errorf("kube: set NetworkUnavailable=False on node %s: %w", m.node, err)
	}
	m.apiOK("patch node status")
	m.log.Info("set the node's NetworkUnavailable condition to False")
	return nil
}
