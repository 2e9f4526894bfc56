package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/weftnet/weft/lease"
)

// Republish implements lease.Republisher: the Node's annotations are
// patched to publish attrs (only what differs, with the Node's
// resourceVersion as a precondition), and Keep restores these from then
// on. A Node that is gone, or whose PodCIDRs no longer give l's key, is a
// loss, and nothing is written. An API server that cannot be reached is
// waited out.
func (m *Manager) Republish(ctx context.Context, l lease.Lease, attrs lease.Attrs) (lease.Lease, error) {
	if err := attrs.Validate(); err != nil {
		return lease.Lease{}, fmt.Errorf("kube: republish: %w", err)
	}
	if err := m.synced(ctx); err != nil {
		return lease.Lease{}, err
	}
	ctx, cancel := m.bind(ctx)
	defer cancel()
	attrs.Owner = m.node
	delay := time.Duration(0)
	for {
		err := m.keepOnce(ctx, l, attrs)
		if err == nil {
			m.forgetLog("republish")
			m.pubMu.Lock()
			m.published = attrs
			m.pubMu.Unlock()
			node, err := m.lister.Get(m.node)
			if apierrors.IsNotFound(err) {
				return lease.Lease{}, fmt.Errorf("%w: node %s was deleted", lease.ErrLeaseLost, m.node)
			}
			if err != nil {
				return lease.Lease{}, fmt.Errorf("kube: node %s: %w", m.node, err)
			}
			published, err := m.ann.decode(m.node, m.annotationsAfterPublish(node, attrs))
			if err != nil {
				return lease.Lease{}, fmt.Errorf("kube: node %s: %w", m.node, err)
			}
			m.log.Info("republished this node's lease", "subnet", l.Key, "public_ip", published.PublicIP, "public_ipv6", published.PublicIPv6)
			l.Attrs = published
			return l, nil
		}
		if errors.Is(err, lease.ErrLeaseLost) {
			m.losses.Add(1)
			m.log.Warn("lease lost", "subnet", l.Key, "err", err)
			return lease.Lease{}, err
		}
		m.logEvery("republish", waitLogInterval, slog.LevelError, "could not republish the node's lease; retrying", "err", err)
		delay = min(max(2*delay, 500*time.Millisecond), recheck)
		select {
		case <-ctx.Done():
			return lease.Lease{}, m.closedOr(ctx.Err())
		case <-time.After(delay):
		}
	}
}
