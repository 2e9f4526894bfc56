package admit

import (
	"container/heap"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/internal/leasekey"
	"github.com/weftnet/weft/lease"
)

// The per-family engine behind a Table: one family's candidates, their
// indexes, and the passes that judge them (a snapshot's from scratch, an
// incremental batch's in rank order). A family is owned by its Table and
// used under the Table's caller's lock, like the Table.

// family is one family's candidates and their indexes.
type family struct {
	ipv6   bool
	facts  *Facts                    // the Table's, in force
	active bool                      // the node runs the family: its candidates are judged
	cands  map[leasekey.Packed]*cand // by the lease's key, packed: one entry for every lease there is
	// blockers holds the admitted peers and this node's own lease, by
	// which a candidate is judged; shadowed holds the other eligible
	// candidates. Each eligible candidate is in one of them. Blockers never
	// conflict with one another, so judging costs a few lookups however
	// many candidates share a subnet, a MAC or an address; both are
	// searched for the candidates a change of verdict may affect.
	blockers, shadowed index

	// wide remembers, for a subnet whose overlapping blockers took long to
	// search (a wide one, holding many younger peers), the blocker found,
	// so that the next candidate at that subnet, or the same key written
	// again, costs a lookup.
	wide map[netip.Prefix]*cand

	// staged holds the candidates of a snapshot whose parts are still
	// arriving (see lease.Batch), nil otherwise; stagedGen is the Table's
	// factsGen when the first part came.
	staged    map[leasekey.Packed]*cand
	stagedGen uint64

	// The pass in progress.
	before map[netip.Prefix]*cand // the admitted peer at each touched subnet, before the pass
	queue  candHeap
	judged []*cand // candidates evaluated, whose verdicts may be news
}

func newFamily(ipv6 bool, facts *Facts) *family {
	return &family{ipv6: ipv6, facts: facts, cands: map[leasekey.Packed]*cand{}, blockers: newIndex(0), shadowed: newIndex(0),
		wide: map[netip.Prefix]*cand{}, before: map[netip.Prefix]*cand{}}
}

// newCand decodes l's half of the family, if it has one, and classifies it.
func (f *family) newCand(l lease.Lease, facts *Facts) (*cand, bool) {
	c, ok := decode(l, f.ipv6)
	if !ok {
		return nil, false
	}
	c.fresh = true
	c.classify(facts)
	return c, true
}

// classify works out what c is to this node and its static verdict.
func (c *cand) classify(facts *Facts) {
	c.kind, c.static, c.why = peerKind, 0, 0
	switch {
	case facts.Own.IsValid() && c.key == leasekey.Pack(facts.Own):
		c.kind = ownKind
	case facts.Node != "" && c.owner == facts.Node:
		c.kind = selfKind
	default:
		r, why := c.staticRules(facts)
		c.static, c.why = codeOf(r), fingerprint(why)
	}
}

// evaluate decides c's verdict from the verdicts of those older than it,
// which are final when it runs: the first static rule that fails, else
// whether an older blocker overlaps it (subnet-conflict) or shares its
// identity (identity-conflict).
func (f *family) evaluate(c *cand) {
	if c.static != 0 {
		c.blocker = nil
		f.setVerdict(c, c.static)
		return
	}
	b, bySubnet := c.blocker, c.bySubnet
	if b != nil && !b.blocks(c) {
		b = nil
	}
	if b == nil || !bySubnet {
		// An overlap outranks a shared identity.
		if sb := f.subnetBlocker(c); sb != nil {
			b, bySubnet = sb, true
		}
	}
	if b == nil {
		b, bySubnet = f.identityBlocker(c), false
	}
	c.blocker, c.bySubnet = b, bySubnet
	switch {
	case b == nil:
		f.setVerdict(c, 0)
	case bySubnet:
		f.setVerdict(c, codeOf(ReasonSubnetConflict))
	default:
		f.setVerdict(c, codeOf(ReasonIdentityConflict))
	}
}

// wideScan is how many overlapping blockers a search visits before its
// result is remembered in family.wide; maxWide bounds that memory.
const (
	wideScan = 64
	maxWide  = 4096
)

// subnetBlocker returns an older blocker whose subnet overlaps c's, if any.
func (f *family) subnetBlocker(c *cand) *cand {
	s := c.subnet()
	if h, ok := f.wide[s]; ok {
		if h.blocks(c) {
			return h
		}
		if h.gone || !h.admitted() && h.kind != ownKind {
			delete(f.wide, s)
		}
	}
	var found *cand
	steps := 0
	f.blockers.subnets.overlapping(s, func(o *cand) bool {
		steps++
		if o != c && o.blocks(c) {
			found = o
			return false
		}
		return true
	})
	if found != nil && steps > wideScan {
		if len(f.wide) >= maxWide {
			clear(f.wide)
		}
		f.wide[s] = found
	}
	return found
}

// identityBlocker returns an older blocker of another node with c's VTEP
// MAC or public IP, if any.
func (f *family) identityBlocker(c *cand) *cand {
	var found *cand
	search := func(o *cand) bool {
		if o != c && !o.sameNode(c) && o.blocks(c) {
			found = o
			return false
		}
		return true
	}
	if !f.blockers.byMAC.onlyNodeOf(c.mac, c) {
		f.blockers.byMAC.each(c.mac, search)
	}
	if found == nil && !f.blockers.byIP.onlyNodeOf(c.public.As16(), c) {
		f.blockers.byIP.each(c.public.As16(), search)
	}
	return found
}

// verdict returns c's verdict, with what to fix: for a conflict, naming
// one of the leases that block it.
func (f *family) verdict(c *cand) Verdict {
	v := Verdict{Peer: c.peer(), Reason: c.verdict.reason()}
	switch {
	case c.admitted():
	case c.static != 0:
		// The facts are those c was last classified by: every change of
		// them classifies every candidate again.
		_, v.Detail = c.staticRules(f.facts)
	default:
		b := c.blocker
		if b == nil || !b.blocks(c) {
			if b = f.subnetBlocker(c); b == nil || v.Reason != ReasonSubnetConflict {
				b = f.identityBlocker(c)
			}
		}
		if b != nil {
			v.Detail = conflictDetail(c, b, v.Reason)
		}
	}
	return v
}

// setVerdict records c's verdict, keeping the blockers in step and
// remembering what was admitted at its subnet before if that changes.
func (f *family) setVerdict(c *cand, v code) {
	if c.kind == peerKind {
		f.judged = append(f.judged, c)
	}
	was := c.admitted()
	if was != (v == 0) {
		f.touch(c.subnet())
	}
	switch {
	case was && v != 0:
		f.blockers.drop(c)
	case !was && v == 0 && c.shadowed:
		f.shadowed.drop(c)
		c.shadowed = false
	}
	c.verdict = v
	switch {
	case !was && v == 0:
		f.blockers.add(c)
	case v != 0 && c.eligible() && !c.shadowed:
		f.shadowed.add(c)
		c.shadowed = true
	}
}

// admittedAt returns the peer admitted at exactly s, if any.
func (f *family) admittedAt(s netip.Prefix) *cand {
	var found *cand
	f.blockers.subnets.exactly(s, func(c *cand) bool {
		if c.kind == peerKind {
			found = c
			return false
		}
		return true
	})
	return found
}

// touch remembers what was admitted at s before the pass changed it.
func (f *family) touch(s netip.Prefix) {
	if _, ok := f.before[s]; !ok {
		f.before[s] = f.admittedAt(s)
	}
}

// pushDependents queues the candidates whose verdicts may depend on c's:
// the younger ones it conflicts with (all of them, for this node's own
// lease).
func (f *family) pushDependents(c *cand) {
	push := func(o *cand, _ Reason) bool {
		if o.kind == peerKind && !o.gone && (c.kind == ownKind || c.older(o)) {
			f.push(o)
		}
		return true
	}
	f.blockers.conflicting(c, push)
	f.shadowed.conflicting(c, push)
}

func (f *family) push(c *cand) {
	if !c.queued {
		c.queued = true
		heap.Push(&f.queue, c)
	}
}

// remove takes key's candidate out, if any, queueing what it may have
// blocked. It returns the candidate removed.
func (f *family) remove(key lease.Key) *cand {
	pk := leasekey.Pack(key)
	c, ok := f.cands[pk]
	if !ok {
		return nil
	}
	delete(f.cands, pk)
	if !f.active {
		c.gone = true
		return c
	}
	blocker := c.kind == ownKind || c.kind == peerKind && c.admitted()
	if c.kind == peerKind && c.admitted() {
		f.touch(c.subnet())
	}
	if blocker {
		f.blockers.drop(c)
	}
	if c.shadowed {
		f.shadowed.drop(c)
		c.shadowed = false
	}
	c.gone = true
	if blocker {
		f.pushDependents(c)
	}
	return c
}

// insert adds a new candidate, replacing old (the same key's, or nil).
func (f *family) insert(c, old *cand) {
	if old != nil {
		c.inherit(old) // a changed lease is not news if its verdict is not
	}
	f.cands[c.key] = c
	if !f.active {
		return
	}
	c.verdict = pending
	switch {
	case c.kind == ownKind:
		f.blockers.add(c)
		f.pushDependents(c)
	case c.kind == peerKind:
		if c.eligible() {
			f.shadowed.add(c)
			c.shadowed = true
		}
		f.push(c)
	}
}

// apply applies incremental events: each changed candidate is judged again,
// and so is every younger candidate whose verdict a change of verdict may
// change, in rank order, so that each sees the final verdicts of the older.
func (f *family) apply(events []lease.Event, facts *Facts, d *Delta) {
	for _, e := range events {
		old := f.remove(e.Lease.Key)
		if e.Type == lease.Removed {
			continue
		}
		if c, ok := f.newCand(e.Lease, facts); ok {
			f.insert(c, old)
		}
	}
	for f.queue.Len() > 0 {
		c := heap.Pop(&f.queue).(*cand)
		c.queued = false
		if c.gone {
			continue
		}
		was := c.admitted()
		f.evaluate(c)
		if c.admitted() != was {
			f.pushDependents(c)
		}
	}
	f.finish(d)
}

// rebuild judges every candidate again under new facts.
func (f *family) rebuild(facts *Facts, d *Delta, wasActive bool) {
	if wasActive {
		for _, c := range f.cands {
			if c.kind == peerKind && c.admitted() {
				f.touch(c.subnet())
			}
		}
	}
	f.judgeAll(facts, d, true)
}

// judgeAll indexes and judges every candidate from scratch, in rank order.
func (f *family) judgeAll(facts *Facts, d *Delta, reclassify bool) {
	// Sized once for every candidate: grown one by one, a map of tens of
	// thousands ends up to twice the size it needs.
	f.blockers, f.shadowed = newIndex(len(f.cands)), newIndex(0)
	clear(f.wide)
	order := make([]*cand, 0, len(f.cands))
	for _, c := range f.cands {
		if reclassify {
			c.classify(facts)
		}
		c.verdict, c.shadowed = pending, false
		if !f.active {
			continue
		}
		switch c.kind {
		case ownKind:
			f.blockers.add(c)
		case peerKind:
			order = append(order, c)
		}
	}
	slices.SortFunc(order, func(a, b *cand) int {
		if a.older(b) {
			return -1
		}
		return 1
	})
	f.judged = slices.Grow(f.judged, len(order))
	for _, c := range order {
		f.evaluate(c)
	}
	f.finish(d)
}

// finish ends a pass: it turns the touched subnets into changes and the
// judged candidates into news.
func (f *family) finish(d *Delta) {
	d.Changes = slices.Grow(d.Changes, len(f.before))
	for s, was := range f.before {
		now := f.admittedAt(s)
		switch {
		case now == was:
		case now == nil:
			d.Changes = append(d.Changes, Change{IPv6: f.ipv6, Subnet: s})
		case was == nil || was.peer() != now.peer():
			d.Changes = append(d.Changes, Change{IPv6: f.ipv6, Subnet: s, Admitted: true, Peer: now.peer()})
		}
	}
	// After a pass over many subnets, a cleared map would keep its room
	// for them all, for as long as the table lives.
	if len(f.before) > 1024 {
		f.before = map[netip.Prefix]*cand{}
	} else {
		clear(f.before)
	}
	for _, c := range f.judged {
		c.fresh = false
		// A static fault is news again if what to fix changed (another
		// bad address, say); a conflict only if its rule did.
		news := c.verdict != c.reported || c.static != 0 && c.why != c.reportedWhy
		if c.gone || !news {
			continue
		}
		c.reported, c.reportedWhy = c.verdict, c.why
		if len(d.Verdicts) >= MaxNews {
			d.Unlisted++
			continue
		}
		d.Verdicts = append(d.Verdicts, f.verdict(c))
	}
	if cap(f.judged) > 1024 {
		f.judged = nil
	} else {
		clear(f.judged)
		f.judged = f.judged[:0]
	}
}

// inherit carries what was reported of old, the same lease's candidate
// before a change, over to c.
func (c *cand) inherit(old *cand) {
	c.reported, c.reportedWhy = old.reported, old.reportedWhy
}

// candHeap orders candidates by rank, oldest first.
type candHeap []*cand

func (h candHeap) Len() int           { return len(h) }
func (h candHeap) Less(i, j int) bool { return h[i].older(h[j]) }
func (h candHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)        { *h = append(*h, x.(*cand)) }
func (h *candHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}

// conflictDetail says why c loses to o, and what to fix.
func conflictDetail(c, o *cand, r Reason) string {
	other := "lease " + o.key.Key().String()
	if o.owner != "" {
		other += " of node " + o.owner
	}
	if o.kind == ownKind {
		other = "this node's own lease " + o.key.Key().String()
	}
	switch {
	case r == ReasonSubnetConflict:
		return fmt.Sprintf("subnet %s overlaps subnet %s of %s, which is older and wins on every node; delete the lease that is wrong", c.subnet(), o.subnet(), other)
	case o.mac == c.mac:
		return fmt.Sprintf("VtepMAC %s is also that of %s, at %s, which is older and wins on every node; each node's VTEP needs a MAC of its own", c.mac, other, o.public)
	}
	return fmt.Sprintf("PublicIP %s is also that of %s, which is older and wins on every node; each node needs an address of its own", c.public, other)
}
