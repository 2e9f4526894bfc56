package etcd

import (
	"bytes"
	"encoding/json"
	"hash/maphash"

	"github.com/weftnet/weft/internal/leasekey"
	"github.com/weftnet/weft/lease"
)

// leaseView holds what a watcher has sent of each lease, to tell a change
// from a renewal: its seniority (peers' leases carry no expiration, see
// lease.Lease) and a digest of what else it sent.
//
// It holds one entry for every usable subnet key, whoever wrote it: tens
// of thousands of leases in a large cluster, or as many as a hostile
// writer makes. The receiver keeps each lease already (peer admission, in
// its compact records), so the view keeps no second copy: about 40 bytes
// an entry, where the lease itself took 200 (the key packed, the
// attributes as bytes). Hence a Removed event carries the lease's key and
// seniority only, and a Changed event no Prev (see lease.Event).
//
// The digest is over the attributes as decoded, the backend data with its
// whitespace removed: a writer that reorders the keys of its backend data
// sends a Changed event with the same meaning, which a receiver judges
// again to the same verdict. The digest's seed is the process's own, so
// that no writer can make two values collide on purpose.
type leaseView struct {
	m    map[leasekey.Packed]viewed
	seed maphash.Seed
	buf  bytes.Buffer // scratch for compacting backend data
}

func newLeaseView() *leaseView {
	return &leaseView{m: map[leasekey.Packed]viewed{}, seed: maphash.MakeSeed()}
}

// viewed is one lease's entry.
type viewed struct {
	seniority int64
	digest    uint64
}

func (v *leaseView) put(l lease.Lease) { v.m[leasekey.Pack(l.Key)] = v.entry(l) }

// entry returns what the view keeps of l.
func (v *leaseView) entry(l lease.Lease) viewed {
	var h maphash.Hash
	h.SetSeed(v.seed)
	str := func(s string) {
		var n [8]byte
		for i := range n {
			n[i] = byte(len(s) >> (8 * i))
		}
		h.Write(n[:])
		h.WriteString(s)
	}
	data := func(raw json.RawMessage) {
		v.buf.Reset()
		if json.Compact(&v.buf, raw) != nil {
			v.buf.Reset()
			v.buf.Write(raw)
		}
		var n [8]byte
		for i := range n {
			n[i] = byte(v.buf.Len() >> (8 * i))
		}
		h.Write(n[:])
		h.Write(v.buf.Bytes())
	}
	a := l.Attrs
	str(l.Invalid)
	str(a.BackendType)
	str(a.Owner)
	b4, b6 := a.PublicIP.As16(), a.PublicIPv6.As16()
	valid := []byte{0, 0}
	if a.PublicIP.IsValid() {
		valid[0] = 1
	}
	if a.PublicIPv6.IsValid() {
		valid[1] = 1
	}
	h.Write(valid)
	h.Write(b4[:])
	h.Write(b6[:])
	data(a.BackendData)
	data(a.BackendV6Data)
	if v.buf.Cap() > 64<<10 {
		v.buf = bytes.Buffer{} // a large value's room is not kept
	}
	return viewed{seniority: l.Seniority, digest: h.Sum64()}
}

// known reports whether a lease was sent for k, and whether l is what was
// sent.
func (v *leaseView) known(l lease.Lease) (known, same bool) {
	e, ok := v.m[leasekey.Pack(l.Key)]
	return ok, ok && e == v.entry(l)
}

// stub returns what the view knows of the lease sent for k: its key and
// seniority, as a Removed event carries them.
func (v *leaseView) stub(k lease.Key) (lease.Lease, bool) {
	e, ok := v.m[leasekey.Pack(k)]
	return lease.Lease{Key: k, Seniority: e.seniority}, ok
}

func (v *leaseView) remove(k lease.Key) { delete(v.m, leasekey.Pack(k)) }

func (v *leaseView) len() int { return len(v.m) }

func (v *leaseView) clear() { clear(v.m) }
