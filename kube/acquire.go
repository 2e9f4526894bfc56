package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/lease"
)

// recheck is how often a wait re-examines the Node without being woken by
// a change of it: a backstop, as changes wake it at once.
const recheck = 30 * time.Second

// errWait means Acquire must wait for the Node or the config to change; the
// condition says what for.
var errWait = errors.New("waiting")

// Acquire implements lease.Manager. The lease is the node's PodCIDRs, for
// the families net-conf.json enables; it never chooses a subnet, unless
// Options.AssignPodCIDRs is set and the node has none (see Allocate), and
// req.Previous only orders that choice. It publishes req.Attrs in the
// node's annotations, with a public-ip-overwrite annotation, if the node
// has one, taking the place of the public IP in the lease it returns.
//
// While the Node does not exist, has no PodCIDR, or has one outside the
// Network, Acquire waits for the Node (or net-conf.json) to change, logging
// what to fix at most once a minute; Stats says what it waits for.
func (m *Manager) Acquire(ctx context.Context, req lease.AcquireRequest) (lease.Lease, error) {
	if err := req.Attrs.Validate(); err != nil {
		return lease.Lease{}, fmt.Errorf("kube: acquire: %w", err)
	}
	if err := m.synced(ctx); err != nil {
		return lease.Lease{}, err
	}
	ctx, cancel := m.bind(ctx)
	defer cancel()
	delay := time.Duration(0)
	for {
		l, err := m.tryAcquire(ctx, req)
		if err == nil {
			m.setCondition("acquire", "")
			return l, nil
		}
		if !errors.Is(err, errWait) {
			// A failed request: retried soon, with backoff.
			delay = min(max(2*delay, 500*time.Millisecond), recheck)
		} else {
			delay = m.untilChallenge()
		}
		select {
		case <-ctx.Done():
			return lease.Lease{}, m.closedOr(ctx.Err())
		case <-m.ownNode:
		case <-time.After(delay):
		}
	}
}

// tryAcquire makes one attempt: errWait if the node is not ready for a
// lease (the condition says why), another error if a request failed.
func (m *Manager) tryAcquire(ctx context.Context, req lease.AcquireRequest) (lease.Lease, error) {
	conf, err := m.Config(ctx)
	if err != nil {
		return m.wait("config", "waiting for the network config: "+err.Error(), slog.LevelWarn,
			"cannot read the network config; waiting", "err", err)
	}
	m.forgetLog("config")
	node, err := m.lister.Get(m.node)
	if apierrors.IsNotFound(err) {
		return m.wait("node", "waiting for Node "+m.node+" to exist", slog.LevelWarn,
			"this node's Node object does not exist; waiting for it (is NODE_NAME the node's name?)")
	}
	if err != nil {
		return lease.Lease{}, err
	}
	m.forgetLog("node")
	cidrs, err := podCIDRs(node)
	if err != nil {
		return m.wait("podcidr", "waiting for a valid PodCIDR: "+err.Error(), slog.LevelError, "the node's PodCIDR is malformed; waiting for it to be fixed", "err", err)
	}
	if !cidrs.IsValid() && m.assign {
		if cidrs, err = m.Allocate(ctx, conf, req.Previous); err != nil {
			return lease.Lease{}, err
		}
	}
	if !cidrs.IsValid() {
		return m.wait("podcidr", "waiting for PodCIDR", slog.LevelWarn,
			"this node has no PodCIDR yet; waiting for one. kube-controller-manager assigns PodCIDRs only when run with "+
				"--allocate-node-cidrs=true and --cluster-cidr (kubeadm: --pod-network-cidr), and the Network in net-conf.json "+
				"must equal or contain that cluster CIDR. To assign one by hand: "+
				fmt.Sprintf(`kubectl patch node %s -p '{"spec":{"podCIDR":"<cidr>"}}'`, m.node),
			"network", conf.Network)
	}
	if err := inNetwork(cidrs, conf); err != nil {
		return m.wait("podcidr", err.Error(), slog.LevelError, "the node's PodCIDR does not fit net-conf.json; waiting for either to be fixed", "err", err)
	}
	m.forgetLog("podcidr")
	if nodes, err := m.lister.List(labels.Everything()); err == nil {
		if other := m.olderClaimant(node, keyFor(cidrs, conf), conf, nodes); other != "" {
			// Every peer's admission keeps the older Node's lease, so
			// routing this one would black-hole the pods placed here.
			return m.wait("shared-podcidr", fmt.Sprintf("PodCIDR %s is also Node %s's, which is older and keeps it on every peer", cidrText(cidrs), other), slog.LevelError,
				"this node's PodCIDR is also an older Node's; waiting for one to be changed (kube-controller-manager assigns each Node its own: check for a PodCIDR set by hand, or a Node re-created under another name)",
				"podcidr", cidrText(cidrs), "older_node", other)
		}
	}
	m.forgetLog("shared-podcidr")

	attrs := req.Attrs
	attrs.Owner = m.node
	node, takeover, err := m.holdName(ctx, node, attrs)
	if err != nil {
		return lease.Lease{}, err
	}
	m.setCondition("acquire", "")
	if err := m.publish(ctx, node, attrs, takeover); err != nil {
		return lease.Lease{}, err
	}
	m.pubMu.Lock()
	m.published = attrs
	m.pubMu.Unlock()
	published, err := m.ann.decode(m.node, m.annotationsAfterPublish(node, attrs))
	if err != nil {
		return lease.Lease{}, fmt.Errorf("kube: node %s: %w", m.node, err)
	}
	l := lease.Lease{Key: keyFor(cidrs, conf), Attrs: published}
	m.log.Info("acquired lease", "subnet", l.Key, "public_ip", published.PublicIP)
	return l, nil
}

// lastPublished returns the attributes the last Acquire published.
func (m *Manager) lastPublished() lease.Attrs {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	return m.published
}

// wait records a condition, logs it at most once a minute, and returns
// errWait.
func (m *Manager) wait(key, cond string, level slog.Level, msg string, args ...any) (lease.Lease, error) {
	// Logged first: whoever sees the condition finds its line in the log.
	m.logEvery(key, waitLogInterval, level, msg, args...)
	m.setCondition("acquire", cond)
	return lease.Lease{}, errWait
}

// annotationsAfterPublish is node's annotations with attrs published.
func (m *Manager) annotationsAfterPublish(node *corev1.Node, attrs lease.Attrs) map[string]string {
	out := maps.Clone(node.Annotations)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range m.ann.encode(attrs) {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	return out
}

// publish makes node's annotations publish attrs, patching only what
// differs, with node's resourceVersion as a precondition, and removes a
// host claim: a claim of another host is so answered (see holdName). On a
// conflict it reads the node again and retries, unless another host's
// addresses are published there now (errHeldElsewhere): that is asked
// first. takeover lets the first attempt replace another host's, after
// a challenge it did not answer.
func (m *Manager) publish(ctx context.Context, node *corev1.Node, attrs lease.Attrs, takeover bool) error {
	for attempt := 0; ; attempt++ {
		if (!takeover || attempt > 0) && !m.mine(m.holderOf(node), attrs) {
			return errHeldElsewhere
		}
		m.noteAnswer(node, attrs)
		patch := map[string]any{}
		for k, v := range m.ann.encode(attrs) {
			cur, has := node.Annotations[k]
			if (v == nil && has) || (v != nil && (!has || cur != *v)) {
				patch[k] = v
			}
		}
		if _, has := node.Annotations[m.ann.key(annHostClaim)]; has {
			patch[m.ann.key(annHostClaim)] = nil
		}
		if len(patch) == 0 {
			return nil
		}
		_, err := m.patchMeta(ctx, node.ResourceVersion, map[string]any{"annotations": patch})
		if err == nil {
			m.log.Info("published the node's annotations", "changed", len(patch))
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == 5 {
			return err
		}
		if node, err = m.getNode(ctx); err != nil {
			return err
		}
	}
}

// patchMeta merge-patches this node's metadata through the status
// subresource (RBAC "patch" on nodes/status, as flannel), with rv as a
// precondition: the API server refuses it if the node changed since.
func (m *Manager) patchMeta(ctx context.Context, rv string, meta map[string]any) (*corev1.Node, error) {
	meta["resourceVersion"] = rv
	body, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return nil, err
	}
	rctx, cancel := m.request(ctx)
	defer cancel()
	n, err := m.nodes.Patch(rctx, m.node, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsConflict(err) {
		m.apiError("patch node", err)
		return nil, fmt.Errorf("kube: patch node %s: %w", m.node, err)
	}
	m.apiOK("patch node")
	return n, err
}

// getNode reads this node from the API server, not the informer's cache,
// which may lag behind a write just refused for a conflict.
func (m *Manager) getNode(ctx context.Context) (*corev1.Node, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	n, err := m.nodes.Get(rctx, m.node, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			m.apiError("get node", err)
		}
		return nil, fmt.Errorf("kube: get node %s: %w", m.node, err)
	}
	m.apiOK("get node")
	return n, nil
}
