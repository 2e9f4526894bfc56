package admit

import (
	"iter"
	"slices"
)

// The rejected verdicts a page at a time. A writer can make every node
// reject tens of thousands of leases; Rejected builds each one's Verdict
// and Detail on every call (16 MB at 50,000, issue 29 item 6), which a
// status page of a few peers need not pay.

// RejectedCount returns how many candidate peers of a family admission
// rejects, building no verdict.
func (t *Table) RejectedCount(ipv6 bool) int {
	f := t.fams[b2i(ipv6)]
	if !f.active {
		return 0
	}
	n := 0
	for _, c := range f.cands {
		if c.kind == peerKind && !c.admitted() {
			n++
		}
	}
	return n
}

// AllRejected yields one family's rejected verdicts, in Rejected's order,
// each built as it is yielded: a caller that stops after a page builds
// that page's verdicts, not every one. Only the candidates' order is
// made up front (a pointer each). The table must not change during the
// iteration.
func (t *Table) AllRejected(ipv6 bool) iter.Seq[Verdict] {
	return func(yield func(Verdict) bool) {
		f := t.fams[b2i(ipv6)]
		for _, c := range f.sorted(true) {
			if !yield(f.verdict(c)) {
				return
			}
		}
	}
}

// sorted returns the family's candidate peers, or its rejected ones, by
// subnet and then rank; none if the family is not in use.
func (f *family) sorted(rejectedOnly bool) []*cand {
	if !f.active {
		return nil
	}
	n := 0
	for _, c := range f.cands {
		if c.kind == peerKind && !(rejectedOnly && c.admitted()) {
			n++
		}
	}
	// Sized once, as Rejected's verdicts are.
	cs := make([]*cand, 0, n)
	for _, c := range f.cands {
		if c.kind == peerKind && !(rejectedOnly && c.admitted()) {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b *cand) int {
		switch {
		case bySubnet(a, b):
			return -1
		case bySubnet(b, a):
			return 1
		}
		return 0
	})
	return cs
}
