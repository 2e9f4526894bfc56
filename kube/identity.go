package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/weftnet/weft/lease"
)

// Two hosts may present one node name (cloned VMs that take their hostname
// for it). In kube mode the name is the Node, so both would route its
// PodCIDR, and each would restore its own public-ip annotation over the
// other's, sending every change to every node. They are told apart as
// lease/etcd tells them (see lease.HostClaim): the public-ip annotations
// say which host holds the Node; a host that finds another host's there
// asks, by writing its own addresses into the host-claim annotation, and a
// live holder's Keep, which watches the Node, answers by removing it.
//
//   - A holder that does not answer within Options.ChallengeTimeout is
//     gone (a restart of this host with a new address, or a host
//     replaced): the asker takes the Node over, with a write conditional
//     on the resourceVersion its claim left, so an answer that comes late
//     wins.
//   - A holder that answers keeps the Node. The asker's Acquire waits,
//     not ready, its condition naming both hosts and the fix, and asks
//     again every challengeRounds timeouts (30 s by default): two writes
//     a round, until the collision ends.
//   - A restart of the same host (an address in common) is no collision.
//   - A holder whose Keep finds another host's addresses published (it was
//     away for longer than a challenge) asks in turn: answered, it has
//     lost the Node, and Keep returns a loss matching
//     lease.ErrIdentityCollision; not answered, it restores its own.
//
// Two askers at once (clones of a host that is gone) do not overwrite each
// other's claims: one that finds another host's claim leaves it for two
// challenge timeouts, the time its writer waits before taking over.

// DefaultChallengeTimeout is how long a holder has to answer a claim.
const DefaultChallengeTimeout = 5 * time.Second

// challengeRounds is how many challenge timeouts pass between two claims of
// a host that was answered.
const challengeRounds = 6

// errHeldElsewhere means another host's addresses are published on the
// Node: the name must be asked for first.
var errHeldElsewhere = errors.New("another host holds this Node")

// holderOf returns the host a Node's public-ip annotations name (not the
// overwrites, which say where peers send, not who wrote them).
func (m *Manager) holderOf(node *corev1.Node) lease.HostClaim {
	var h lease.HostClaim
	if a, err := netip.ParseAddr(node.Annotations[m.ann.key(annPublicIP)]); err == nil && a.Is4() {
		h.PublicIP = a
	}
	if a, err := netip.ParseAddr(node.Annotations[m.ann.key(annPublicIPv6)]); err == nil && a.Is6() && a.Zone() == "" {
		h.PublicIPv6 = a
	}
	return h
}

// hostClaimOf returns the claim a Node carries, if any and readable.
func (m *Manager) hostClaimOf(node *corev1.Node) (lease.HostClaim, bool) {
	v, ok := node.Annotations[m.ann.key(annHostClaim)]
	if !ok || len(v) > maxClaimLen {
		return lease.HostClaim{}, ok
	}
	var c lease.HostClaim
	if json.Unmarshal([]byte(v), &c) != nil {
		return lease.HostClaim{}, true
	}
	return c, true
}

// mine reports whether host h is this one: publishing attrs now, or what
// this Manager last published (before a Republish moved it).
func (m *Manager) mine(h lease.HostClaim, attrs lease.Attrs) bool {
	return !h.IsValid() || h.SameHost(attrs) || h.SameHost(m.lastPublished())
}

// challengeResult is what a challenge found.
type challengeResult int

const (
	holderGone     challengeResult = iota // no answer: take the Node over
	holderAnswered                        // the holder is alive: a collision
	nodeMoved                             // changed otherwise: look again
)

// challenge writes this host's claim on node, if it is unchanged, and
// waits for the holder to answer. With holderGone it returns the Node as
// the claim left it, for the takeover to be conditional on.
func (m *Manager) challenge(ctx context.Context, node *corev1.Node, attrs lease.Attrs) (challengeResult, *corev1.Node, error) {
	me := lease.HostOf(attrs)
	holder := m.holderOf(node)
	if c, has := m.hostClaimOf(node); has && !c.SameHost(attrs) {
		// Another asker's: let it run its course first.
		if n, err := m.nextChange(ctx, node.ResourceVersion, 2*m.challengeTimeout); err != nil || n != nil {
			return nodeMoved, nil, err
		}
		m.log.Info("replacing a host claim on this Node that its writer did not act on", "claimed_by", c.String())
	}
	raw, err := json.Marshal(me)
	if err != nil {
		return nodeMoved, nil, err
	}
	m.logEvery("challenge", waitLogInterval, slog.LevelInfo, "another host's addresses are published on this Node; asking whether it is alive",
		"holder", holder.String(), "this_host", me.String(), "timeout", m.challengeTimeout)
	claimed, err := m.patchMeta(ctx, node.ResourceVersion, map[string]any{"annotations": map[string]any{m.ann.key(annHostClaim): string(raw)}})
	if apierrors.IsConflict(err) {
		return nodeMoved, nil, nil
	}
	if err != nil {
		return nodeMoved, nil, err
	}
	now, err := m.nextChange(ctx, claimed.ResourceVersion, m.challengeTimeout)
	switch {
	case err != nil:
		return nodeMoved, nil, err
	case now == nil:
		return holderGone, claimed, nil
	}
	if _, still := m.hostClaimOf(now); !still && m.holderOf(now) == holder {
		return holderAnswered, nil, nil
	}
	return nodeMoved, nil, nil
}

// nextChange waits up to d for this Node to be at a resourceVersion other
// than rv, and returns it as the API server has it; nil if it did not
// change. The informer's events wake it, but only the API server says: the
// cache may still hold a version from before rv.
func (m *Manager) nextChange(ctx context.Context, rv string, d time.Duration) (*corev1.Node, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	seen := map[string]bool{rv: true} // versions of the cache known not to be a change
	for {
		if n, err := m.lister.Get(m.node); err != nil || !seen[n.ResourceVersion] {
			now, gerr := m.getNode(ctx)
			if gerr != nil {
				return nil, gerr
			}
			if now.ResourceVersion != rv {
				return now, nil
			}
			if err == nil {
				seen[n.ResourceVersion] = true
			}
		}
		select {
		case <-ctx.Done():
			return nil, m.closedOr(ctx.Err())
		case <-deadline.C:
			return nil, nil
		case <-m.ownNode:
		}
	}
}

// holdName makes sure this host may publish attrs on node: nil if the Node
// names no other host, or the other host did not answer (node is then the
// Node to take over, conditional on its resourceVersion); errWait, with the
// collision as the condition, if it answered or was answered recently;
// another error to look again.
func (m *Manager) holdName(ctx context.Context, node *corev1.Node, attrs lease.Attrs) (_ *corev1.Node, takeover bool, _ error) {
	holder := m.holderOf(node)
	if m.mine(holder, attrs) {
		m.forgetLog("collision")
		return node, false, nil
	}
	m.idMu.Lock()
	next := m.nextChallenge
	m.idMu.Unlock()
	if time.Now().Before(next) {
		_, err := m.collided(holder, attrs)
		return nil, false, err
	}
	res, claimed, err := m.challenge(ctx, node, attrs)
	switch {
	case err != nil:
		return nil, false, err
	case res == holderGone:
		m.log.Warn("the host whose addresses were published on this Node did not answer; taking the Node over",
			"was_host", holder.String(), "this_host", lease.HostOf(attrs).String())
		return claimed, true, nil
	case res == holderAnswered:
		m.idMu.Lock()
		m.nextChallenge = time.Now().Add(challengeRounds * m.challengeTimeout)
		m.idMu.Unlock()
		_, err := m.collided(holder, attrs)
		return nil, false, err
	}
	return nil, false, fmt.Errorf("kube: node %s changed while its holder was asked; looking again", m.node)
}

// collided reports a collision with holder: the condition, a line at most
// once a minute, errWait.
func (m *Manager) collided(holder lease.HostClaim, attrs lease.Attrs) (lease.Lease, error) {
	err := m.collisionError(holder, attrs)
	return m.wait("collision", err.Error(), slog.LevelError,
		"another host runs as this Node and answered for it; this host stays off the network until one of them is renamed or stopped",
		"holder", holder.String(), "this_host", lease.HostOf(attrs).String(), "err", err)
}

func (m *Manager) collisionError(holder lease.HostClaim, attrs lease.Attrs) error {
	return lease.CollisionError(m.node, "its Node", holder, lease.HostOf(attrs),
		"give each host its own Node (NODE_NAME, from the Pod's spec.nodeName; a cloned VM must change its hostname), or stop the other agent")
}

// untilChallenge is how long until the next claim may be written; recheck
// if none is due.
func (m *Manager) untilChallenge() time.Duration {
	m.idMu.Lock()
	defer m.idMu.Unlock()
	if d := time.Until(m.nextChallenge); d > 0 {
		return min(d, recheck)
	}
	return recheck
}

// noteAnswer logs, at most once a minute (one key, whatever the asker
// wrote, so that it costs no memory per claim), that another host
// asked for this Node and is answered.
func (m *Manager) noteAnswer(node *corev1.Node, attrs lease.Attrs) {
	c, has := m.hostClaimOf(node)
	if !has || c.SameHost(attrs) {
		return
	}
	m.collisions.Add(1)
	m.logEvery("answer", waitLogInterval, slog.LevelError,
		"another host presents this node's name and asked for this Node; answered, so it stays here: give each host its own Node (NODE_NAME)",
		"other_host", c.String(), "this_host", lease.HostOf(attrs).String())
}
