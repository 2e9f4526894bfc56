package admit

import (
	"iter"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/lease"
)

// A Table holds every known lease and the facts of this node, and the
// verdict on each candidate peer they give. See the package documentation
// for the rules. The zero Table is not usable; call NewTable.
type Table struct {
	facts Facts
	fams  [2]*family // IPv4, IPv6
	// factsGen counts the changes of facts, so that a snapshot whose
	// parts straddle one is classified again at its end.
	factsGen uint64
	staging  bool // a snapshot's parts are arriving
}

// A Verdict is the judgement on one candidate peer.
type Verdict struct {
	Peer Peer
	// Reason is the rule that rejects the peer, "" if it is admitted.
	Reason Reason
	// Detail says what is wrong and what to fix, naming the conflicting
	// lease where there is one; "" if admitted.
	Detail string
}

// Admitted reports whether the peer is admitted.
func (v Verdict) Admitted() bool { return v.Reason == "" }

// A Change is a change of the peer admitted at one subnet: what the
// datapath must program.
type Change struct {
	IPv6   bool
	Subnet netip.Prefix
	// Admitted says a peer is admitted at Subnet now, which is Peer;
	// false means none is any more, and the subnet's objects must go.
	Admitted bool
	Peer     Peer
}

// A Delta is what one call changed.
type Delta struct {
	// Changes are the admitted peers that changed, by family and subnet.
	Changes []Change
	// Verdicts are the candidates whose verdict is news: newly rejected,
	// rejected by another rule, or admitted after being rejected. A new
	// candidate that is admitted, a candidate that went away, or a
	// rejection whose detail alone changed (another blocker) is not news.
	Verdicts []Verdict
	// Unlisted counts the news past the first MaxNews, which Verdicts
	// leaves out: Table.Rejected lists them all.
	Unlisted int
}

// MaxNews is the most verdicts one Delta lists. A snapshot among a
// writer's 100,000 bad leases is as many news at once: listed, each with
// its detail, they cost a starting node about 300 bytes apiece, and as
// many log lines.
const MaxNews = 100

// NewTable returns a Table with no leases.
func NewTable(f Facts) *Table {
	t := &Table{facts: f.normalize()}
	for i := range t.fams {
		t.fams[i] = newFamily(i == 1, &t.facts)
		t.fams[i].active = t.facts.network(i == 1).IsValid()
	}
	return t
}

// Compute returns the admitted peers and the verdicts that leases and facts
// give, from scratch: what a Table holding them reports.
func Compute(f Facts, leases []lease.Lease) (admitted []Peer, verdicts []Verdict) {
	t := NewTable(f)
	events := make([]lease.Event, len(leases))
	for i, l := range leases {
		events[i] = lease.Event{Type: lease.Added, Lease: l}
	}
	t.Apply(lease.Batch{Snapshot: true, Events: events})
	return append(t.Admitted(false), t.Admitted(true)...), t.Verdicts()
}

// Facts returns the facts in force, normalised: lists masked, sorted and
// without duplicates.
func (t *Table) Facts() Facts { return t.facts }

// SetFacts replaces the facts and recomputes every verdict. Facts equal to
// those in force change nothing and cost nothing.
func (t *Table) SetFacts(f Facts) Delta {
	f = f.normalize()
	if f.equal(t.facts) {
		return Delta{}
	}
	t.facts = f
	t.factsGen++
	var d Delta
	for i, fam := range t.fams {
		was := fam.active
		fam.active = f.network(i == 1).IsValid()
		fam.rebuild(&t.facts, &d, was)
	}
	d.sort()
	return d
}

// Apply takes one batch of lease events, as a lease.Manager's WatchLeases
// sends them. A snapshot replaces every lease and recomputes everything;
// an incremental batch recomputes only the verdicts that can depend on the
// leases it changes. A snapshot in parts (lease.Batch's More) changes
// nothing until its last part: each part before returns an empty Delta,
// and the table goes on judging and answering with what it held.
func (t *Table) Apply(b lease.Batch) Delta {
	var d Delta
	if b.Snapshot {
		begin := b.Part == 0 || !t.staging
		for _, fam := range t.fams {
			fam.stage(b.Events, &t.facts, begin, t.factsGen)
		}
		if t.staging = b.More; t.staging {
			return d
		}
		for _, fam := range t.fams {
			fam.replaceStaged(&t.facts, &d, t.factsGen)
		}
	} else {
		for _, fam := range t.fams {
			fam.apply(b.Events, &t.facts, &d)
		}
	}
	d.sort()
	return d
}

// Admitted returns one family's admitted peers, sorted by subnet.
func (t *Table) Admitted(ipv6 bool) []Peer {
	// Sized once: the blockers are the admitted peers and the own lease.
	return slices.AppendSeq(make([]Peer, 0, t.fams[b2i(ipv6)].blockers.subnets.tree.Len()), t.AllAdmitted(ipv6))
}

// AdmittedAt returns the peer admitted at subnet, if any: one lookup.
func (t *Table) AdmittedAt(ipv6 bool, subnet netip.Prefix) (Peer, bool) {
	f := t.fams[b2i(ipv6)]
	if !f.active {
		return Peer{}, false
	}
	var found *cand
	f.blockers.subnets.exactly(subnet, func(c *cand) bool {
		if c.kind == peerKind {
			found = c
			return false
		}
		return true
	})
	if found == nil {
		return Peer{}, false
	}
	return found.peer(), true
}

// AllAdmitted yields one family's admitted peers, in subnet order, without
// collecting them: at tens of thousands of peers, a caller that converts
// them is spared a copy. The table must not change during the iteration.
func (t *Table) AllAdmitted(ipv6 bool) iter.Seq[Peer] {
	return func(yield func(Peer) bool) {
		f := t.fams[b2i(ipv6)]
		if !f.active {
			return
		}
		f.blockers.subnets.tree.Ascend(func(c *cand) bool {
			return c.kind != peerKind || yield(c.peer())
		})
	}
}

// Len returns how many candidate peers the families in use hold, admitted
// or not.
func (t *Table) Len() int {
	n := 0
	for _, f := range t.fams {
		if f.active {
			for _, c := range f.cands {
				if c.kind == peerKind {
					n++
				}
			}
		}
	}
	return n
}

// Verdicts returns the verdict on every candidate peer of the families in
// use, sorted by family and subnet, then by rank.
func (t *Table) Verdicts() []Verdict { return t.verdicts(false) }

// Rejected returns the verdicts of the rejected candidates only, in the
// order of Verdicts.
func (t *Table) Rejected() []Verdict { return t.verdicts(true) }

// RejectedCounts returns how many candidates each rule rejects now.
func (t *Table) RejectedCounts() map[Reason]int {
	counts := map[Reason]int{}
	for _, f := range t.fams {
		if f.active {
			for _, c := range f.cands {
				if c.kind == peerKind && !c.admitted() {
					counts[c.verdict.reason()]++
				}
			}
		}
	}
	return counts
}

func (t *Table) verdicts(rejectedOnly bool) []Verdict {
	fams := make([][]*cand, len(t.fams))
	n := 0
	for i, f := range t.fams {
		fams[i] = f.sorted(rejectedOnly)
		n += len(fams[i])
	}
	// Sized once: tens of thousands of verdicts, grown by doubling,
	// would be held twice over while the last growth copies them.
	out := make([]Verdict, 0, n)
	for i, f := range t.fams {
		for _, c := range fams[i] {
			out = append(out, f.verdict(c))
		}
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (d *Delta) sort() {
	slices.SortFunc(d.Changes, func(a, b Change) int {
		if a.IPv6 != b.IPv6 {
			return b2i(a.IPv6) - b2i(b.IPv6)
		}
		return a.Subnet.Compare(b.Subnet)
	})
	slices.SortStableFunc(d.Verdicts, func(a, b Verdict) int {
		if a.Peer.IPv6 != b.Peer.IPv6 {
			return b2i(a.Peer.IPv6) - b2i(b.Peer.IPv6)
		}
		if c := a.Peer.Subnet.Compare(b.Peer.Subnet); c != 0 {
			return c
		}
		return a.Peer.Key.Compare(b.Peer.Key)
	})
}
