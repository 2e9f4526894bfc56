package etcd

import (
	"bytes"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// listingValues is how many bytes of values a listing of the whole
// prefix holds, at most, before it keeps only the values its reader
// decides by (see compactor). Leases as flannel writes them are about
// 250 bytes: a cluster of 20,000 nodes lists 5 MB of values, which the
// first snapshot then takes whole rather than listing again. Past it,
// the listing is a writer's doing (issue 29 item 6: 75,000 subnet keys
// of rejected leases, 23 MB as etcd's client decodes them, held by
// OwnLease and Acquire through a starting node's peak).
const listingValues = 8 << 20

// A compactor bounds what a listing of the whole prefix holds for
// OwnLease and Acquire: once its values pass the budget, every key keeps
// its name, revisions and etcd lease, which Acquire's plan counts (the
// subnets taken, their seniority), but only the keys whose values
// mention this node (hints: see ownershipHints) keep their values, which
// the plan decodes. A key whose value is dropped cannot be this node's;
// the one thing lost is the owner named when a lease of this node's
// overlaps an older one (reportConflict), which then names none.
//
// A compact listing serves no snapshot, which sends every value: the
// watcher lists for itself, page by page.
type compactor struct {
	hints   [][]byte // nil: keep every value
	budget  int
	held    int
	compact bool
}

// add notes kv, a key the listing keeps, and drops its value or, when
// the budget is passed with it, the values of every key in kvs (which
// holds kv), as compaction requires.
func (c *compactor) add(kvs []*mvccpb.KeyValue, kv *mvccpb.KeyValue, config string) {
	if c.hints == nil {
		return
	}
	if c.compact {
		c.strip(kv, config)
		return
	}
	c.held += len(kv.Value)
	if c.held <= c.budget {
		return
	}
	c.compact = true
	for _, kv := range kvs {
		c.strip(kv, config)
	}
}

// strip drops kv's value unless it is the config or mentions this node.
func (c *compactor) strip(kv *mvccpb.KeyValue, config string) {
	if kv.Value == nil || string(kv.Key) == config || mentionsAny(kv.Value, c.hints) {
		return
	}
	kv.Value = nil
}

// sameHints reports whether a compact listing made with hints a serves a
// reader whose hints are b: the values a reader decides by are those
// that mention it.
func sameHints(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}
