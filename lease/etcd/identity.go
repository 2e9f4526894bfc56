package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// ErrIdentityCollision is matched by the error Acquire waits on, and by
// the loss Keep returns, when another host presents this node's name: two
// hosts with one Options.Node, as cloned VMs that take their hostname for
// it are. Stats().Condition says so meanwhile. It is
// lease.ErrIdentityCollision, which kube mode's collisions match too.
var ErrIdentityCollision = lease.ErrIdentityCollision

// A node's name says whose a lease is; its public addresses say which host
// wrote it. Two hosts cannot share a public address and both carry VXLAN
// traffic, so a lease under this node's name that shares none of this
// host's addresses was written by another host with the same name, or by
// this host before its address changed. The two are told apart by asking:
// the newcomer writes a claim into the value, and a live holder's Keep,
// which watches its key, answers it by writing its value back. A holder
// that does not answer within Options.ChallengeTimeout is gone, and the
// newcomer takes the key over with the same conditional write a renewal
// uses. A holder that answers keeps the key; the newcomer logs an error
// naming both hosts and the fix, reports not ready, and asks again every
// few challenge timeouts (30 s by default): two writes per round, a few a
// minute, until the collision ends.
//
// A newcomer that was answered and then finds the name's lease gone waits
// Options.SettleTime before it takes a fresh subnet: the holder may be
// about to re-create its key in an etcd that was wiped. A holder that
// finds, on re-creating its key, that another host with its name acquired
// in that window yields instead, and asks in turn: the store decides who
// was first, and the name never ends up with two hosts' leases.
//
// The claim rides in the value as "WeftClaim", beside the attributes, so
// peers see no change (lease.Attrs ignores it) and flannel ignores it
// too. Writes that carry it keep the key's etcd lease.

// Defaults for Options.
const (
	DefaultChallengeTimeout = 5 * time.Second
	// challengeRounds is how many challenge timeouts pass between two
	// challenges of a holder that answered.
	challengeRounds = 6
)

// claim is the challenge a newcomer writes: its own addresses.
type claim = lease.HostClaim

func addrsString(v4, v6 netip.Addr) string {
	return lease.HostClaim{PublicIP: v4, PublicIPv6: v6}.String()
}

// sameHost reports whether two values were written from one host: they
// share a public address.
func sameHost(a, b lease.Attrs) bool { return lease.SameHost(a, b) }

// decodeClaim returns the claim a stored value carries, if any.
func decodeClaim(value []byte) (claim, bool) {
	var w struct{ WeftClaim *claim }
	if json.Unmarshal(value, &w) != nil || w.WeftClaim == nil {
		return claim{}, false
	}
	return *w.WeftClaim, true
}

// withClaim returns value with c added.
func withClaim(value []byte, c claim) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	fields["WeftClaim"] = raw
	return json.Marshal(fields)
}

// collision describes another host holding this node's name.
type collision struct {
	key    lease.Key
	holder lease.Attrs
}

func (m *Manager) collisionError(c collision, mine lease.Attrs) error {
	return lease.CollisionError(m.node, c.key.String(), lease.HostOf(c.holder), lease.HostOf(mine),
		"give each host a unique --node-name or NODE_NAME (a cloned VM must change its hostname or set one), or stop the other agent")
}

// challengeResult is what a challenge found.
type challengeResult int

const (
	holderGone     challengeResult = iota // no answer: the key may be taken over at rev
	holderAnswered                        // the holder is alive: a collision
	keyMoved                              // deleted or rewritten otherwise: plan again
)

// challenge writes a claim into the key of p, if it is unchanged since the
// listing, and waits for its holder to answer. It returns the revision of
// the claim, which a takeover must find unchanged.
//
// Two hosts may ask at once, both clones of one that is gone. The one that
// finds another host's claim already in the value leaves it be for two
// challenge timeouts, the time its writer waits before taking the key
// over, so that the two do not overwrite each other's claims forever; only
// a claim nobody acted on in that time is replaced.
func (m *Manager) challenge(ctx context.Context, p plan, stored []byte, mine lease.Attrs) (challengeResult, int64, error) {
	path := m.keyPath(p.key)
	me := claim{PublicIP: mine.PublicIP, PublicIPv6: mine.PublicIPv6}
	if c, ok := decodeClaim(stored); ok && !c.SameHost(mine) {
		moved, err := m.changesWithin(ctx, path, p.existingRev, 2*m.challengeTimeout)
		if err != nil || moved {
			return keyMoved, 0, err
		}
		m.log.Info("replacing a claim on this node's name that its writer did not act on", "key", path, "claimed_by", c.String())
	}
	value, err := withClaim(stored, me)
	if err != nil {
		return keyMoved, 0, nil // unreadable: planning again decides
	}
	rctx, cancel := m.request(ctx)
	resp, err := m.client.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(path), "=", p.existingRev)).
		Then(clientv3.OpPut(path, string(value), clientv3.WithIgnoreLease())).
		Commit()
	cancel()
	if err != nil {
		return keyMoved, 0, fmt.Errorf("challenge the holder of %s: %w", path, err)
	}
	if !resp.Succeeded {
		return keyMoved, 0, nil
	}
	rev := resp.Header.Revision
	wctx, cancel := context.WithTimeout(ctx, m.challengeTimeout)
	defer cancel()
	for wresp := range m.client.Watch(clientv3.WithRequireLeader(wctx), path, clientv3.WithRev(rev+1)) {
		if wresp.Err() != nil {
			return keyMoved, 0, nil
		}
		for _, ev := range wresp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return keyMoved, 0, nil
			}
			var now lease.Attrs
			if json.Unmarshal(ev.Kv.Value, &now) != nil || now.Owner != m.node || sameHost(now, mine) {
				return keyMoved, 0, nil
			}
			c, still := decodeClaim(ev.Kv.Value)
			if !still {
				return holderAnswered, 0, nil
			}
			if !c.SameHost(mine) {
				return keyMoved, 0, nil // another host asks too: see above
			}
		}
	}
	if ctx.Err() != nil {
		return keyMoved, 0, ctx.Err()
	}
	return holderGone, rev, nil
}

// changesWithin reports whether the key at path changes after rev within
// d. A watch that breaks counts as a change: planning again decides.
func (m *Manager) changesWithin(ctx context.Context, path string, rev int64, d time.Duration) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for wresp := range m.client.Watch(clientv3.WithRequireLeader(wctx), path, clientv3.WithRev(rev+1)) {
		if wresp.Err() != nil || len(wresp.Events) > 0 {
			return true, nil
		}
	}
	return false, ctx.Err()
}

// answer writes this node's value back over a claim another host wrote
// into its key, keeping the key's etcd lease, if the key is still at rev.
// It returns the revision written, or 0 if the key had moved on.
func (m *Manager) answer(ctx context.Context, path string, value []byte, rev int64, c claim) (int64, error) {
	m.collisions.Add(1)
	if m.claimLog.due(c.String()) {
		m.log.Error("another host presents this node's name and asked for its lease; answered, so it stays here: give each host a unique --node-name or NODE_NAME",
			"key", path, "other_host", c.String())
	}
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.client.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(path), "=", rev)).
		Then(clientv3.OpPut(path, string(value), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("answer the claim on %s: %w", path, err)
	}
	if !resp.Succeeded {
		return 0, nil
	}
	return resp.Header.Revision, nil
}

// logLimiter lets a line through once per key per period.
type logLimiter struct {
	period time.Duration
	mu     sync.Mutex
	last   map[string]time.Time
}

func (l *logLimiter) due(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.period {
		return false
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	l.last[key] = now
	return true
}
