package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
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

	// The values Acquire decides by: a large listing keeps only these.
	hints := ownershipHints(m.node, attrs)
	var (
		retry  = m.retrier("acquire")
		known  parsedListing
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
			kept, err := m.listAll(ctx, from, byAcquire, hints)
			relisted = true
			if err != nil {
				if werr := retry.fail(ctx, err); werr != nil {
					return lease.Lease{}, werr
				}
				continue
			}
			known, listed = kept.parsed(m), true
		}
		rawConfig, hasConfig, records := known.config, known.hasConfig, known.records
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
					known = known.with(m, fresh)
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
