package etcd

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/lease"
)

// listingReuse is how long a listing of the whole prefix made by
// OwnLease serves Acquire, and snapshotReuse how long Acquire's serves
// the first WatchLeases snapshot. A starting node reads every lease
// three times in a few milliseconds: OwnLease (for the VTEP MACs it
// published, unless it reads the one lease its subnet.env names),
// Acquire (to choose its subnet) and WatchLeases (its first snapshot).
// Handing one listing down the chain makes that once: when a whole
// cluster restarts at once, what etcd reads and sends is a third.
//
// Acquire reading an older listing is safe, not free. Its write is
// conditional on the key it writes and on no key holding its subnets (a
// dual-stack create, on no subnet key created since the listing), and a
// lost race brings what was written since; but a key of another length
// overlapping its IPv4 subnet, created after the listing's revision, is
// not seen (as with any listing), and the window is the time the listing
// took plus up to listingReuse, not the listing's time alone.
//
// A snapshot from an older listing costs nothing but the watch's catch
// up: a watch from just after the listing's revision brings every change
// since, as after a listing of its own, and one whose history was
// compacted away lists afresh. Under a herd, a node's lease is held many
// seconds after Acquire listed (its write and the Keep behind it wait in
// etcd's queue with everyone's), so the window is longer. A wipe of etcd
// meanwhile is not missed: the listing is taken only in the store's
// history it was made in (epoch), and every read and watch response
// meanwhile is checked against that history.
//
// Ages count from when the listing was complete, not begun: under a
// herd, a paged listing of every lease takes longer than listingReuse,
// and a listing of its own would be as old by the time it was whole.
const (
	listingReuse  = 5 * time.Second
	snapshotReuse = time.Minute
)

// reuseFor is how long a listing kept by keeper serves the next reader.
func reuseFor(keeper lister) time.Duration {
	if keeper == byAcquire {
		return snapshotReuse
	}
	return listingReuse
}

// keptListing is a listing of the network's whole prefix at rev, made in
// epoch (the store's history then: continuity.current), complete at a
// time, and kept by a reader for the next in the chain.
type keptListing struct {
	kvs   []*mvccpb.KeyValue
	rev   int64
	epoch <-chan struct{}
	at    time.Time
	by    lister
	// compact says the listing is compacted, not kvs (see compactor),
	// made with hints, the node's, which its reader must share.
	compact   bool
	compacted parsedListing
	hints     [][]byte
}

// A lister is a reader of the whole prefix, in the order a starting node
// reads it. Each takes only its predecessor's listing: a reader never
// takes back one of its own, which it may have found stale since (a lost
// write).
type lister int

const (
	byNobody lister = iota
	byOwnLease
	byAcquire
)

// recentListing holds the last listing for the next reader.
type recentListing struct {
	mu   sync.Mutex
	kept keptListing
	// keeps counts keep calls: a timer forgets only the keeping that set
	// it, not a later keeping of the same listing by its next reader.
	keeps uint64
}

// keep stores l for the next reader, until reuseFor(l.by) after it was
// made, so that a Manager that never reads again does not hold it.
func (r *recentListing) keep(l keptListing) {
	left := reuseFor(l.by) - time.Since(l.at)
	if left <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kept = l
	r.keeps++
	mine := r.keeps
	time.AfterFunc(left, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.keeps == mine {
			r.kept = keptListing{}
		}
	})
}

// take returns the kept listing if it was kept by from, is recent and is
// of the store's history now (epoch), and forgets it either way: it
// serves one reader, which may keep it again for the next.
func (r *recentListing) take(epoch <-chan struct{}, from lister) (keptListing, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.kept
	r.kept = keptListing{}
	// Acquire's listing serves the first snapshot, which sends every
	// value: not a compact one.
	if l.kvs == nil && !l.compact || from == byNobody || l.by != from || l.epoch != epoch || time.Since(l.at) >= reuseFor(l.by) ||
		l.compact && from == byAcquire {
		return keptListing{}, false
	}
	// The reader may append to what it took.
	l.kvs = slices.Clip(l.kvs)
	l.compacted.records = slices.Clip(l.compacted.records)
	return l, true
}

// wanted reports whether a listing of the whole prefix keeps key: the
// config, or a subnet key.
func (m *Manager) wanted(key []byte) bool {
	if string(key) == m.configKey() {
		return true
	}
	name, ok := bytes.CutPrefix(key, []byte(m.subnetsPrefix()))
	if !ok {
		return false
	}
	_, err := lease.ParseKey(string(name))
	return err == nil
}

// under returns the listing's keys under prefix.
func (l keptListing) under(prefix string) []*mvccpb.KeyValue {
	out := make([]*mvccpb.KeyValue, 0, len(l.kvs))
	for _, kv := range l.kvs {
		if bytes.HasPrefix(kv.Key, []byte(prefix)) {
			out = append(out, kv)
		}
	}
	return out
}

// listAll returns, for reader as, the listing from kept if it may be had
// (see listingReuse), or else lists the whole prefix; and keeps what it
// returns for the next reader, unless as is byNobody. With hints (see
// ownershipHints), a listing whose values pass listingValues keeps only
// the values that mention the node (see compactor); with none, every
// value.
func (m *Manager) listAll(ctx context.Context, from, as lister, hints [][]byte) (keptListing, error) {
	epoch := m.history.current()
	if l, ok := m.recent.take(epoch, from); ok && (!l.compact || hints != nil && sameHints(l.hints, hints)) {
		l.by = as
		if !l.compact || as != byAcquire { // no snapshot takes it
			m.recent.keep(l)
		}
		return l, nil
	}
	// Paged, as WatchLeases lists: when a whole cluster starts at once,
	// thousands of listings of every lease share etcd, and one response
	// holding them all takes longer than the request timeout to arrive.
	// Each agent then gives up, and asks again, and none gets through.
	// A page arrives in time however many are in flight.
	//
	// Only the config and the subnet keys are kept, page by page: no
	// reader wants the rest, and a writer's keys that are no subnet keys
	// (100,000 of them, say) would otherwise be held, values and all, for
	// as long as the listing serves the next reader. They are counted,
	// and said once. Not sized by the keys listed, for that reason too.
	var (
		skipped int
		example string
		c       = compactor{m: m, hints: hints, budget: m.listingValues}
	)
	rev, err := m.listPaged(ctx, m.prefix+"/", func(page []*mvccpb.KeyValue, _ int64) {
		for _, kv := range page {
			if m.wanted(kv.Key) {
				c.add(kv)
				continue
			}
			if skipped == 0 {
				example = string(kv.Key)
			}
			skipped++
		}
	})
	if err != nil {
		return keptListing{}, fmt.Errorf("list %s: %w", m.prefix, err)
	}
	if skipped > 0 {
		// The first one by name, as a key a listing skips alone is
		// named; the count says how many more.
		m.log.Warn("skipping etcd keys under the network's prefix that are neither its config nor subnet keys; delete them",
			"key", example, "count", skipped)
	}
	l := keptListing{kvs: slices.Clip(c.kvs), rev: rev, epoch: epoch, at: time.Now(), by: as,
		compact: c.compact, compacted: c.parsed, hints: hints}
	if as == byOwnLease || as == byAcquire && !l.compact {
		m.recent.keep(l)
	}
	return l, nil
}
