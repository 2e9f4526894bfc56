package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/lease"
)

// raceWarning is how many lost create races in a row are logged as a sign
// of heavy contention (many nodes acquiring at once). Acquire keeps trying:
// contention resolves itself.
const raceWarning = 32

// How Acquire obtained a lease, for the log.
const (
	howKept     = "kept its own lease"
	howPrevious = "reclaimed its previous subnet"
	howNew      = "allocated a free subnet"
	// The lease under this node's name is another host's: ask it.
	howChallenge = "challenge"
	howTakeover  = "took over its name's lease from a host that did not answer"
)

// A plan is the key Acquire will write and the condition that makes the
// write safe.
type plan struct {
	key         lease.Key
	how         string
	existingRev int64 // for howKept: the revision the key must still have
	reservation bool  // keep the key free of an etcd lease
	// For howKept: the key's stored value and etcd lease, to tell
	// whether it needs a write at all.
	existingValue []byte
	existingLease clientv3.LeaseID
	// outside are this node's leased keys the network config no longer
	// contains (the Network was moved): deleted once the new lease is
	// won, each only if unchanged since the listing.
	outside []record
	// superseded are, for howRunning, this node's older leases that
	// give way to the subnet it runs on (see running.go): deleted like
	// outside.
	superseded []record
	// conflicting are this node's leased keys that overlap an older
	// lease (see overlap.go): deleted once the new lease
	// is won, each only if unchanged since the listing.
	conflicting []record
	// For howChallenge: the holder's stored value and attributes.
	holderValue []byte
	holder      lease.Attrs
}

// A listing is what Acquire knows of the prefix: keys as of revision rev.
type listing struct {
	kvs []*mvccpb.KeyValue
	rev int64
}

// Acquire implements lease.Manager. req.Attrs.Owner is set to Options.Node.
//
// It lists the prefix once, then writes one key with a Txn: a renewal of a
// key this node owns, conditional on its revision, or a create, conditional
// on no key holding the new subnets (for a dual-stack key, on no subnet
// key created since the listing, as a key cannot be found by its IPv6
// part). A lost race
// returns the keys written since the listing in the same Txn and Acquire
// tries again. A missing or invalid config, an unreachable etcd, heavy
// contention and a full network are waited out, with one log line per
// change of condition.
//
// Keys of this node's that the config no longer contains (the Network was
// moved to another range) are deleted once the new lease is won, each only
// if unchanged since the listing; reservations among them are left to the
// operator.
func (m *Manager) Acquire(ctx context.Context, req lease.AcquireRequest) (lease.Lease, error) {
	attrs := req.Attrs
	attrs.Owner = m.node
	if err := attrs.Validate(); err != nil {
		return lease.Lease{}, fmt.Errorf("etcd: acquire: %w", err)
	}
	value, err := json.Marshal(attrs)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("etcd: acquire: %w", err)
	}

	var (
		retry  = m.retrier("acquire")
		known  listing
		listed bool
		// relisted is set once Acquire has listed, or tried to.
		relisted bool
		grant    clientv3.LeaseID // granted once, reused across races
		races    int
		// contested is when a listing last showed this node's name held
		// by another host that answered its challenge.
		contested time.Time
	)
	defer func() {
		// A grant no written key uses would live on, empty, for a TTL.
		if grant != 0 {
			m.revokeQuietly(grant)
		}
	}()
	for {
		if !listed {
			// Only the first listing may be one OwnLease kept: the
			// ones after it must be newer than what a lost write
			// saw.
			from := byOwnLease
			if relisted {
				from = byNobody
			}
			kept, err := m.listAll(ctx, from, byAcquire)
			relisted = true
			if err != nil {
				if werr := retry.fail(ctx, err); werr != nil {
					return lease.Lease{}, werr
				}
				continue
			}
			known, listed = listing{kept.kvs, kept.rev}, true
		}
		rawConfig, hasConfig, records := m.parseListing(known.kvs)
		cfg, err := m.parseConfig(rawConfig, hasConfig)
		if err == nil {
			var p plan
			if p, err = m.plan(cfg, records, req.Previous, attrs); err == nil && p.how == howChallenge {
				var res challengeResult
				var rev int64
				res, rev, err = m.challenge(ctx, p, p.holderValue, attrs)
				switch {
				case err != nil:
				case res == keyMoved:
					listed = false
					continue
				case res == holderAnswered:
					contested = time.Now()
					err = m.collisionError(collision{p.key, p.holder}, attrs)
					listed = false
					if werr := retry.failFor(ctx, err, challengeRounds*m.challengeTimeout); werr != nil {
						return lease.Lease{}, werr
					}
					continue
				default:
					m.log.Warn("the lease under this node's name was written from another address and its writer did not answer; taking it over (this host's address changed, or the other host is down)",
						"subnet", p.key, "was_host", addrsString(p.holder.PublicIP, p.holder.PublicIPv6))
					p = plan{key: p.key, how: howTakeover, existingRev: rev, reservation: p.reservation}
				}
			}
			if err == nil && !contested.IsZero() && (p.how == howNew || p.how == howPrevious || p.how == howRunning) {
				// The other host's key is gone, but moments ago it
				// answered: etcd may have been wiped, and that host be
				// about to re-create its key. Taking a fresh subnet now
				// would leave the name with two hosts' leases.
				if gone := time.Since(contested); gone < m.settle {
					err = fmt.Errorf("%w: node name %q was held by another host %v ago, which answered this host's challenge; its lease is gone now (expired, deleted, or etcd was wiped): waiting %v for it to come back before taking a subnet. Give each host a unique --node-name or NODE_NAME",
						ErrIdentityCollision, m.node, gone.Round(time.Second), m.settle)
					listed = false
					if werr := retry.failFor(ctx, err, m.challengeTimeout); werr != nil {
						return lease.Lease{}, werr
					}
					continue
				}
			}
			if err == nil {
				var l lease.Lease
				var won bool
				var fresh listing
				l, won, fresh, err = m.write(ctx, p, known.rev, attrs, value, &grant)
				switch {
				case err == nil && won:
					retry.ok()
					m.deleteStale(ctx, p.outside, "outside the network config")
					m.deleteStale(ctx, p.superseded, whySuperseded)
					m.deleteStale(ctx, p.conflicting, "overlaps an older lease")
					return l, nil
				case err == nil && p.existingRev == 0:
					// Another node created a key in the way between our
					// listing and our write; the Txn returned what was
					// written since. Keys deleted meanwhile still look
					// taken, which only errs on the safe side.
					known = listing{append(known.kvs, fresh.kvs...), fresh.rev}
					if len(fresh.kvs) == 0 {
						// Nothing was written since, yet the create
						// lost: the listing does not describe the
						// store (its history restarted under it, a
						// wipe not yet seen). A listing of its own
						// shows that, and the continuity check reads
						// its header.
						listed = false
					}
					races++
					if races%raceWarning == 0 {
						m.log.Warn("many nodes are acquiring at once; still trying", "lost_races", races)
					}
					// Spread the retries of nodes that collided.
					if err := ctxutil.Sleep(ctx, time.Duration(rand.N(min(10*races, 1000)+1))*time.Millisecond); err != nil {
						return lease.Lease{}, err
					}
					continue
				case err == nil:
					// This node's own key changed under it: list afresh.
					listed = false
					continue
				}
			}
		}
		// The listing gave no usable plan (no or bad config, no free
		// subnet) or the write failed: wait, then list afresh.
		listed = false
		if werr := retry.fail(ctx, err); werr != nil {
			return lease.Lease{}, werr
		}
	}
}

// plan chooses what to write, in the order lease.Manager.Acquire documents.
func (m *Manager) plan(cfg lease.Config, records []record, prev lease.Key, mine lease.Attrs) (plan, error) {
	var own, foreign *record
	var foreignAttrs lease.Attrs
	var outside, mineLeased, conflicting []record
	onlyLeased := true // every own key that fits is supersedable
	hints := ownershipHints(m.node, mine)
	for i := range records {
		r := &records[i]
		if !mentionsAny(r.value, hints) {
			continue // cannot be this node's; skip decoding it
		}
		var stored lease.Attrs
		if err := json.Unmarshal(r.value, &stored); err != nil || !m.owns(stored, mine) {
			continue
		}
		if fits(cfg, r.key) {
			if older, owner := olderOverlap(cfg, r, records); older != nil {
				m.reportConflict(r, older, owner)
				if r.etcdLease != 0 && (stored.Owner == "" || sameHost(stored, mine)) {
					conflicting = append(conflicting, *r)
				}
				continue
			}
		}
		if stored.Owner != "" && !sameHost(stored, mine) {
			// Another host's under this node's name, or this host's
			// from before its address changed: never deleted, never
			// taken without asking.
			if foreign == nil && fits(cfg, r.key) {
				foreign = r
				foreignAttrs = stored
			}
			continue
		}
		if !fits(cfg, r.key) {
			if r.etcdLease == 0 {
				m.log.Info("own reservation does not fit the network config; leaving it in place", "subnet", r.key, "network", cfg.Network, "ipv6_network", cfg.IPv6Network)
			} else {
				outside = append(outside, *r)
			}
			continue
		}
		if supersedable(*r, stored, mine, m.node) {
			mineLeased = append(mineLeased, *r)
		} else {
			onlyLeased = false
		}
		if own == nil || better(r, own, prev) {
			own = r
		}
	}
	if own != nil && onlyLeased && own.key != prev && prev.IsValid() && fits(cfg, prev) {
		if free, err := previousFree(cfg, records, prev); err == nil && free {
			return plan{key: prev, how: howRunning, outside: outside, superseded: mineLeased, conflicting: conflicting}, nil
		}
	}
	if own != nil {
		return plan{key: own.key, how: howKept, existingRev: own.modRev, reservation: own.etcdLease == 0, outside: outside,
			conflicting: conflicting, existingValue: own.value, existingLease: own.etcdLease}, nil
	}
	if foreign != nil {
		return plan{key: foreign.key, how: howChallenge, existingRev: foreign.modRev, reservation: foreign.etcdLease == 0,
			holderValue: foreign.value, holder: foreignAttrs}, nil
	}

	v4, v6, err := allocators(cfg, records)
	if err != nil {
		return plan{}, err
	}
	if prev.IsValid() && fits(cfg, prev) && (v4 == nil || v4.CheckFree(prev.IPv4) == nil) && (v6 == nil || v6.CheckFree(prev.IPv6) == nil) {
		return plan{key: prev, how: howPrevious, outside: outside, conflicting: conflicting}, nil
	}
	var k lease.Key
	if v4 != nil {
		if k.IPv4, err = v4.Pick(nil); err != nil {
			return plan{}, err
		}
	}
	if v6 != nil {
		if k.IPv6, err = v6.Pick(nil); err != nil {
			return plan{}, err
		}
	}
	return plan{key: k, how: howNew, outside: outside, conflicting: conflicting}, nil
}

// ownershipHints returns byte strings one of which a value must contain to
// be this node's: its owner name or its public addresses, JSON-encoded as
// encoding/json writes them. A value spelling them with other escapes is not
// recognised as this node's, and the node then takes a new subnet: a waste,
// never a theft.
func ownershipHints(node string, mine lease.Attrs) [][]byte {
	var hints [][]byte
	add := func(s string) {
		b, _ := json.Marshal(s)
		hints = append(hints, b)
	}
	add(node)
	if mine.PublicIP.IsValid() {
		add(mine.PublicIP.String())
	}
	if mine.PublicIPv6.IsValid() {
		add(mine.PublicIPv6.String())
	}
	return hints
}

func mentionsAny(value []byte, hints [][]byte) bool {
	for _, h := range hints {
		if bytes.Contains(value, h) {
			return true
		}
	}
	return false
}

// owns reports whether a stored value belongs to this node: it names this
// node as owner or, written by flannel without an owner, carries this node's
// public address.
func (m *Manager) owns(stored, mine lease.Attrs) bool {
	if stored.Owner != "" {
		return stored.Owner == m.node
	}
	return mine.PublicIP.IsValid() && stored.PublicIP == mine.PublicIP ||
		mine.PublicIPv6.IsValid() && stored.PublicIPv6 == mine.PublicIPv6
}

// better prefers, among this node's own keys, a reservation, then the
// previous subnet, then the lowest key, so that the choice is stable.
func better(a, b *record, prev lease.Key) bool {
	if (a.etcdLease == 0) != (b.etcdLease == 0) {
		return a.etcdLease == 0
	}
	if (a.key == prev) != (b.key == prev) {
		return a.key == prev
	}
	return a.key.Compare(b.key) < 0
}

// fits reports whether k has exactly the families cfg enables, each inside
// its network. A subnet outside SubnetMin..SubnetMax or of another length
// still fits: a node keeps its subnet when the network is widened.
func fits(cfg lease.Config, k lease.Key) bool {
	inside := func(network, p netip.Prefix) bool {
		return network.Bits() <= p.Bits() && network.Contains(p.Addr())
	}
	return k.IPv4.IsValid() == cfg.EnableIPv4 && k.IPv6.IsValid() == cfg.EnableIPv6 &&
		(!cfg.EnableIPv4 || inside(cfg.Network, k.IPv4)) &&
		(!cfg.EnableIPv6 || inside(cfg.IPv6Network, k.IPv6))
}

// takenOf lists the subnets of one family that keys hold, whatever their
// values: a subnet with a malformed value is still somebody's. A key as
// wide as the network or wider is nobody's: no node can route it, peer
// admission rejects it everywhere (package lease/admit), and counting it
// would let one hand-written key, 10.244.0.0-16 say, leave every new node
// without a subnet.
func takenOf(records []record, v4 bool, network netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(records))
	for _, r := range records {
		p := r.key.IPv6
		if v4 {
			p = r.key.IPv4
		}
		if p.IsValid() && (!network.IsValid() || p.Bits() > network.Bits()) {
			out = append(out, p)
		}
	}
	return out
}

// write carries out a plan in one Txn. It reports whether the write won; if
// it lost, it returns the subnet keys modified since listRev, which the Txn
// read instead. *grant holds the etcd lease to attach, granted on first use;
// on a win it is handed over and zeroed so the caller does not revoke it.
func (m *Manager) write(ctx context.Context, p plan, listRev int64, attrs lease.Attrs, value []byte, grant *clientv3.LeaseID) (lease.Lease, bool, listing, error) {
	path := m.keyPath(p.key)
	_, returns := m.history.reconnectedAfter()
	if l, ok := m.unchanged(ctx, p, value, returns); ok {
		if p.existingLease != 0 && p.existingLease == *grant {
			// The key is on this Acquire's own grant: an earlier
			// write timed out here but was applied there. The
			// grant is the key's now, and must not be revoked
			// as unused (which would delete the key); it is this
			// Manager's, to revoke when it renews or releases.
			*grant = 0
			if h, ok := m.getHeld(p.key); ok {
				h.ours = true
				m.setHeld(p.key, h)
			}
		}
		return l, true, listing{}, nil
	}
	var putOpts []clientv3.OpOption
	if !p.reservation {
		if *grant == 0 {
			rctx, cancel := m.request(ctx)
			g, err := m.client.Grant(rctx, m.ttlSeconds())
			cancel()
			if err != nil {
				return lease.Lease{}, false, listing{}, fmt.Errorf("grant etcd lease: %w", err)
			}
			*grant = g.ID
		}
		putOpts = append(putOpts, clientv3.WithLease(*grant))
	}
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(path), "=", p.existingRev)}
	since := clientv3.OpGet(m.subnetsPrefix(), clientv3.WithPrefix(), clientv3.WithMinModRev(listRev+1))
	then := []clientv3.Op{clientv3.OpPut(path, string(value), putOpts...)}
	if p.existingRev == 0 {
		conds = m.createConditions(p.key, listRev)
		// What was written since the listing, read in the same
		// revision as the create: another host with this node's name
		// may have created a key meanwhile (see yieldToTwin).
		then = append(then, since)
	}
	rctx, cancel := m.request(ctx)
	resp, err := m.client.Txn(rctx).
		If(conds...).
		Then(then...).
		Else(since).
		Commit()
	cancel()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			*grant = 0 // gone (e.g. etcd restored from a backup): grant anew
		}
		return lease.Lease{}, false, listing{}, fmt.Errorf("write %s: %w", path, err)
	}
	if !resp.Succeeded {
		return lease.Lease{}, false, listing{resp.Responses[0].GetResponseRange().Kvs, resp.Header.Revision}, nil
	}
	if p.existingRev == 0 {
		written := resp.Responses[1].GetResponseRange().Kvs
		if m.yieldToTwin(ctx, path, listRev, resp.Header.Revision, written) {
			return lease.Lease{}, false, listing{written, resp.Header.Revision}, nil
		}
	}
	h := heldLease{rev: resp.Header.Revision, returns: returns}
	l := lease.Lease{Key: p.key, Attrs: attrs}
	if !p.reservation {
		h.id, h.ours, h.renewedAt = *grant, true, time.Now()
		*grant = 0
		l.Expiration = h.renewedAt.Add(m.ttl)
	}
	m.setHeld(p.key, h)
	m.log.Info("acquired lease", "subnet", p.key, "how", p.how, "reservation", p.reservation)
	return l, true, listing{}, nil
}

// unchanged takes this node's own key as it is, writing nothing, when it
// already holds value and, unless it is a reservation, its etcd lease has
// more than RenewMargin left: a restart, or a reconnection after booting
// from local state, then costs etcd one read of the lease's TTL rather
// than a write that every peer's watch would carry. Keep renews it when
// due, by the TTL etcd reported.
func (m *Manager) unchanged(ctx context.Context, p plan, value []byte, returns uint64) (lease.Lease, bool) {
	if p.how != howKept || !bytes.Equal(p.existingValue, value) {
		return lease.Lease{}, false
	}
	h := heldLease{rev: p.existingRev, returns: returns}
	l := lease.Lease{Key: p.key}
	if err := json.Unmarshal(value, &l.Attrs); err != nil {
		return lease.Lease{}, false
	}
	// The listing may be older than the key (one this Acquire withdrew
	// since, say): a read-only Txn, which etcd applies without a new
	// revision, checks the key is still as listed.
	rctx, cancel := m.request(ctx)
	still, err := m.client.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(m.keyPath(p.key)), "=", p.existingRev)).Commit()
	cancel()
	if err != nil || !still.Succeeded {
		return lease.Lease{}, false
	}
	if !p.reservation {
		rctx, cancel := m.request(ctx)
		resp, err := m.client.TimeToLive(rctx, p.existingLease)
		cancel()
		left := time.Duration(0)
		if err == nil {
			left = time.Duration(resp.TTL) * time.Second
		}
		if left <= m.margin {
			return lease.Lease{}, false // renew it now, by writing
		}
		now := time.Now()
		h.id, h.renewedAt = p.existingLease, now.Add(left-m.ttl)
		l.Expiration = now.Add(left)
	}
	m.setHeld(p.key, h)
	m.log.Info("acquired lease", "subnet", p.key, "how", howKept, "reservation", p.reservation, "written", false)
	return l, true
}

// createConditions make creating key safe: no key may hold any of its
// subnets. etcd compares keys, not subnets, so:
//
//   - the key itself must not exist (this covers IPv6-only keys, which all
//     start "0.0.0.0-0&");
//   - no dual-stack key may share its IPv4 subnet: none may start with
//     "<IPv4 part>&";
//   - for a dual-stack key, no subnet key may have been created since the
//     listing, because another node's key could hold the same IPv6 subnet
//     under a different IPv4 one, and a key cannot be found by its IPv6
//     part. Renewals do not change a key's creation revision, so they do
//     not get in the way.
//
// Keys of another length that overlap (possible only while nodes disagree
// about SubnetLen during a config change) are excluded by the listing but
// not by these conditions.
func (m *Manager) createConditions(k lease.Key, listRev int64) []clientv3.Cmp {
	conds := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(m.keyPath(k)), "=", 0)}
	if k.IPv4.IsValid() {
		v4 := m.keyPath(lease.Key{IPv4: k.IPv4}) + "&"
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(v4), "=", 0).WithPrefix())
		if k.IPv6.IsValid() {
			conds = append(conds, clientv3.Compare(clientv3.CreateRevision(m.subnetsPrefix()), "<", listRev+1).WithPrefix())
		}
	}
	return conds
}

func (m *Manager) ttlSeconds() int64 { return int64(math.Ceil(m.ttl.Seconds())) }

func (m *Manager) setHeld(k lease.Key, h heldLease) {
	m.mu.Lock()
	m.held[k] = h
	m.mu.Unlock()
}

// forget drops what this Manager remembers of holding k.
func (m *Manager) forget(k lease.Key) {
	m.mu.Lock()
	delete(m.held, k)
	m.mu.Unlock()
}

func (m *Manager) getHeld(k lease.Key) (heldLease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[k]
	return h, ok
}

// revokeQuietly revokes an etcd lease that no key this node keeps is
// attached to. Failure only means it lapses at its TTL instead.
func (m *Manager) revokeQuietly(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := m.client.Revoke(ctx, id); err != nil {
		m.log.Debug("could not revoke unused etcd lease; it will lapse", "lease", int64(id), "err", err)
	}
}

// deleteStale deletes keys of this node's that it no longer uses, each
// only if unchanged since it was listed; why says what they are, for the
// log. Peers would keep routing them to this node until they lapsed, and
// no other node could be given them. A failure is logged; the key then
// lapses at its TTL.
func (m *Manager) deleteStale(ctx context.Context, keys []record, why string) {
	for _, r := range keys {
		path := m.keyPath(r.key)
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Txn(rctx).
			If(clientv3.Compare(clientv3.ModRevision(path), "=", r.modRev)).
			Then(clientv3.OpDelete(path)).
			Commit()
		cancel()
		switch {
		case err != nil:
			m.log.Warn("could not delete a lease of this node's that it no longer uses; it will lapse", "subnet", r.key, "what", why, "err", err)
			continue
		case !resp.Succeeded:
			m.log.Info("a lease of this node's that it no longer uses changed since it was listed; leaving it", "subnet", r.key, "what", why)
			continue
		}
		m.log.Info("deleted a lease of this node's that it no longer uses", "subnet", r.key, "what", why)
		if h, ok := m.getHeld(r.key); ok && h.ours && h.id == r.etcdLease {
			m.revokeQuietly(h.id)
		}
		m.forget(r.key)
	}
}

// yieldToTwin handles two writers with this node's name creating keys at
// once, each before the other's create was in its listing: both Txns
// succeed, on different subnets. Each create reads, in its own revision,
// the keys written since its listing, so the later of the two always sees
// the earlier's key. The later deletes its own (if unchanged) and reports
// true, and Acquire plans again with the earlier key in view: its own if
// it is this host's (a second daemon), a challenge if another host's.
func (m *Manager) yieldToTwin(ctx context.Context, path string, listRev, rev int64, written []*mvccpb.KeyValue) bool {
	hint := ownershipHints(m.node, lease.Attrs{})
	twin := ""
	for _, kv := range written {
		if string(kv.Key) == path || kv.CreateRevision <= listRev || !mentionsAny(kv.Value, hint) {
			continue
		}
		var a lease.Attrs
		if json.Unmarshal(kv.Value, &a) == nil && a.Owner == m.node {
			twin = string(kv.Key)
			break
		}
	}
	if twin == "" {
		return false
	}
	rctx, cancel := m.request(ctx)
	defer cancel()
	_, err := m.client.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(path), "=", rev)).
		Then(clientv3.OpDelete(path)).
		Commit()
	if err != nil {
		// The key stays; the twin's Keep or this node's next plan
		// sorts the two out.
		m.log.Warn("could not withdraw a key created beside another of this node's name", "key", path, "other", twin, "err", err)
		return false
	}
	m.log.Info("another writer with this node's name created a key at the same time; withdrew this one", "key", path, "other", twin)
	return true
}
