package etcd

import (
	"bytes"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// listingValues is how many bytes a listing of the whole prefix holds,
// at most, as etcd's client decodes it (keys, values, and kvOverhead a
// key), before it is made compact (see compactor). A lease as flannel
// writes it is about 420 bytes so held: a cluster of 20,000 nodes lists
// 8.4 MB, which the first snapshot then takes whole rather than listing
// again. Past it, the listing is a writer's doing (issue 29 item 6:
// 75,000 subnet keys of rejected leases, 23 MB, held by OwnLease and
// Acquire through a starting node's peak).
const listingValues = 10 << 20

// kvOverhead is what etcd's client holds for a key besides its key's and
// value's bytes: the KeyValue (128 bytes with protobuf's bookkeeping)
// and the pointer to it.
const kvOverhead = 136

// A compactor bounds what a listing of the whole prefix holds for
// OwnLease and Acquire. Once its values pass the budget, the listing is
// held as records, not as etcd's key-values (about 180 bytes a key
// before its value): every subnet key keeps its name, revisions and
// etcd lease, which Acquire's plan counts (the subnets taken, their
// seniority), but only the keys whose values mention this node (hints:
// see ownershipHints) keep their values, which the plan decodes. A key
// whose value is dropped cannot be this node's; the one thing lost is
// the owner named when a lease of this node's overlaps an older one
// (reportConflict), which then names none.
//
// A compact listing serves no snapshot, which sends every value: the
// watcher lists for itself, page by page.
type compactor struct {
	m       *Manager
	hints   [][]byte // nil: never compact
	budget  int
	held    int
	kvs     []*mvccpb.KeyValue // until compact
	compact bool
	parsed  parsedListing // once compact
}

// A parsedListing is a listing of the whole prefix as its readers use
// it: the raw config, if listed, and the subnet records.
type parsedListing struct {
	config    []byte
	hasConfig bool
	records   []record
	rev       int64
}

// add takes kv, a key the listing keeps (the config or a subnet key).
func (c *compactor) add(kv *mvccpb.KeyValue) {
	if c.compact {
		c.record(kv)
		return
	}
	c.kvs = append(c.kvs, kv)
	c.held += len(kv.Key) + len(kv.Value) + kvOverhead
	if c.hints == nil || c.held <= c.budget {
		return
	}
	c.compact = true
	for i, kv := range c.kvs {
		c.kvs[i] = nil // each goes as it is recorded
		c.record(kv)
	}
	c.kvs = nil
}

// record adds kv to the compact listing, its value dropped unless it is
// the config or mentions this node.
func (c *compactor) record(kv *mvccpb.KeyValue) {
	if string(kv.Key) == c.m.configKey() {
		c.parsed.config, c.parsed.hasConfig = kv.Value, true
		return
	}
	r, err := c.m.parseKV(kv)
	if err != nil {
		return // not a subnet key: wanted let none through
	}
	if !mentionsAny(r.value, c.hints) {
		r.value = nil
	}
	c.parsed.records = append(c.parsed.records, r)
}

// parsed returns the listing as its readers use it: parsed, unless it
// was compact.
func (l keptListing) parsed(m *Manager) parsedListing {
	if l.compact {
		p := l.compacted
		p.rev = l.rev
		return p
	}
	config, hasConfig, records := m.parseListing(l.kvs)
	return parsedListing{config: config, hasConfig: hasConfig, records: records, rev: l.rev}
}

// with returns p with the keys of a later listing (what was written
// since p, as a lost write returns it) added, at its revision.
func (p parsedListing) with(m *Manager, later listing) parsedListing {
	config, hasConfig, records := m.parseListing(later.kvs)
	if hasConfig {
		p.config, p.hasConfig = config, true
	}
	p.records = append(p.records, records...)
	p.rev = later.rev
	return p
}

// sameHints reports whether a compact listing made with hints a serves a
// reader whose hints are b: the values a reader decides by are those
// that mention it.
func sameHints(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}
