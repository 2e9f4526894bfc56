package admit

import (
	"github.com/weftnet/weft/internal/leasekey"
	"github.com/weftnet/weft/lease"
)

// A snapshot replaces every candidate of a family. One in parts (see
// lease.Batch) is decoded part by part into candidates kept aside (stage),
// and replaces the family's only at its last part (replaceStaged): until
// then the table judges and reports what it held, and neither the parts'
// events nor a second copy of the leases are held, only the candidates.

// stage decodes a snapshot part's events into the family's staged
// candidates; begin drops what earlier parts staged.
func (f *family) stage(events []lease.Event, facts *Facts, begin bool, gen uint64) {
	if begin || f.staged == nil {
		n := 0
		for _, e := range events {
			if f.ipv6 && e.Lease.Key.IPv6.IsValid() || !f.ipv6 && e.Lease.Key.IPv4.IsValid() {
				n++
			}
		}
		f.staged, f.stagedGen = make(map[leasekey.Packed]*cand, n), gen
	}
	for _, e := range events {
		if c, ok := f.newCand(e.Lease, facts); ok {
			f.staged[c.key] = c
		}
	}
}

// replaceStaged makes the staged candidates the whole set, and judges
// them; gen is the Table's factsGen now: facts changed while parts
// arrived classify every candidate again.
func (f *family) replaceStaged(facts *Facts, d *Delta, gen uint64) {
	if f.active {
		for _, c := range f.cands {
			if c.kind == peerKind && c.admitted() {
				f.touch(c.subnet())
			}
		}
	}
	old := f.cands
	f.cands = f.staged
	if f.cands == nil {
		f.cands = map[leasekey.Packed]*cand{}
	}
	f.staged = nil
	for k, c := range f.cands {
		if o, had := old[k]; had {
			c.inherit(o)
		}
	}
	for _, c := range old {
		c.gone = true
	}
	f.judgeAll(facts, d, gen != f.stagedGen)
}
