package probe

import (
	"container/heap"
	"hash/maphash"
	"net/netip"
)

// rotation orders targets by a per-node hash of their subnet, and hands
// out the next ones after a cursor, wrapping around: every target is
// reached within ceil(N/k) rounds of k, a target added meanwhile within
// one more turn, and no order needs to be kept between rounds but the
// cursor.
type rotation struct {
	seed   maphash.Seed
	cursor uint64
}

// newRotation returns a rotation with an order of its own: maphash's
// seed is random per process, so that nodes do not probe the same peers at
// the same time, and a target's turn moves on a restart, which does no
// harm.
func newRotation() rotation {
	s := maphash.MakeSeed()
	return rotation{seed: s, cursor: maphash.String(s, "start")}
}

func (r *rotation) rank(subnet netip.Prefix) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	b := subnet.Addr().As16()
	h.Write(b[:])
	h.WriteByte(byte(subnet.Bits()))
	return h.Sum64()
}

// next returns the indexes of the k targets that follow the cursor, and
// moves the cursor past them. It is O(N log k).
func (r *rotation) next(targets []Target, k int) []int {
	if k <= 0 || len(targets) == 0 {
		return nil
	}
	// A max-heap on the distance after the cursor keeps the k nearest.
	h := &distHeap{}
	for i, t := range targets {
		d := r.rank(t.Subnet) - r.cursor - 1 // wraps: the distance going round
		if h.Len() < k {
			heap.Push(h, distIndex{d, i})
		} else if d < (*h)[0].dist {
			(*h)[0] = distIndex{d, i}
			heap.Fix(h, 0)
		}
	}
	out := make([]int, h.Len())
	far := (*h)[0].dist
	for i := range out {
		out[i] = (*h)[i].index
	}
	r.cursor += far + 1
	return out
}

type distIndex struct {
	dist  uint64
	index int
}

type distHeap []distIndex

func (h distHeap) Len() int           { return len(h) }
func (h distHeap) Less(i, j int) bool { return h[i].dist > h[j].dist }
func (h distHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *distHeap) Push(x any)        { *h = append(*h, x.(distIndex)) }
func (h *distHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
