package probe

import (
	"fmt"
	"time"
)

// Path MTU checks: a peer's turn in the rotation sends, beside the small
// echo, one of the device's MTU with DF set. Small answered and full-size
// lost is a black hole: the path under the overlay carries less than the
// overlay needs, which no ICMP "fragmentation needed" reports (a switch
// drops oversized frames silently, and VXLAN's outer packets are sent
// without DF). The size the path carries is then searched over the next
// rounds, the peer being re-probed every round as a failing one: each
// check sends the full size again (to see a repair) and searchSplits
// sizes that cut the interval still open into equal parts, so that the
// interval shrinks fourfold a round: about six rounds from a 1450-byte
// device, seven from a 9000-byte one.

// searchSplits is how many sizes a search step sends besides the full one.
// Once the size is found, each check sends it and the next one instead.
const searchSplits = 3

// pathState is what the Prober knows of one peer's path.
type pathState struct {
	valid     bool
	mtu, over int // the device MTU and overhead it was measured for
	checked   time.Time
	ok        bool // the full size passed at the last check
	lo, hi    int  // when !ok: the largest size that passed, the smallest lost
}

// plan returns the sizes a check of t's path sends: the full size first.
func (s *pathState) plan(t Target) []int {
	sizes := []int{t.MTU}
	if !s.valid || s.ok || s.mtu != t.MTU {
		return sizes
	}
	if s.hi-s.lo <= 1 {
		// Found: check the size found still passes, and the next still
		// does not (a loss by chance may have set it), so that a wrong
		// answer corrects itself.
		sizes = append(sizes, s.lo)
		if s.hi < t.MTU {
			sizes = append(sizes, s.hi)
		}
		return sizes
	}
	return append(sizes, splits(s.lo, s.hi)...)
}

// splits returns up to searchSplits sizes strictly between lo and hi that
// cut it into equal parts.
func splits(lo, hi int) []int {
	var out []int
	w := hi - lo
	for i := 1; i <= searchSplits; i++ {
		s := lo + w*i/(searchSplits+1)
		if s > lo && s < hi && (len(out) == 0 || out[len(out)-1] != s) {
			out = append(out, s)
		}
	}
	return out
}

// update records a check of the sizes plan gave, answered[i] telling
// whether sizes[i] was, for t, whose small probe was answered.
func (s *pathState) update(t Target, sizes []int, answered []bool, now time.Time, small int) {
	if !s.valid || s.mtu != t.MTU || s.over != t.Overhead {
		*s = pathState{valid: true, mtu: t.MTU, over: t.Overhead, ok: true}
	}
	s.checked = now
	if answered[0] {
		s.ok, s.lo, s.hi = true, 0, 0
		return
	}
	if s.ok {
		s.ok, s.lo, s.hi = false, small, t.MTU
	}
	for i, size := range sizes[1:] {
		switch {
		case answered[i+1] && size >= s.hi:
			// Larger than a size lost before: that loss was chance, or
			// the path changed. Start the upper bound again.
			s.lo, s.hi = size, t.MTU
		case answered[i+1]:
			s.lo = max(s.lo, size)
		case size <= small:
			// Lost by chance: the small echo was answered.
		case size <= s.lo:
			// The size found no longer passes: start the lower bound
			// again.
			s.lo, s.hi = small, size
		default:
			s.hi = min(s.hi, size)
		}
	}
}

// result is the PathMTU the state shows.
func (s *pathState) result() *PathMTU {
	if !s.valid {
		return nil
	}
	m := &PathMTU{Checked: s.checked, DeviceMTU: s.mtu, Overhead: s.over, OK: s.ok}
	if !s.ok {
		m.Carries, m.Drops, m.Exact = s.lo, s.hi, s.hi-s.lo <= 1
	}
	return m
}

// blackHoleDiagnosis names a black hole, the figures and the fix.
func blackHoleDiagnosis(t Target, m *PathMTU) string {
	over := fmt.Sprintf("device MTU %d + %d of encapsulation", m.DeviceMTU, m.Overhead)
	if m.Overhead == 0 {
		over = fmt.Sprintf("device MTU %d", m.DeviceMTU)
	}
	if !m.Exact {
		return fmt.Sprintf("path MTU black hole: the underlay path to %s drops %d-byte packets that the overlay needs (%s), while %d-byte ones pass; finding the size it carries",
			orUnknown(t.PublicIP.String()), m.Need(), over, m.Path())
	}
	return fmt.Sprintf("path MTU black hole: the underlay path to %s carries %d bytes, the overlay needs %d (%s): lower Backend.MTU in net-conf.json to %d or less, or raise the underlay path's MTU to %d",
		orUnknown(t.PublicIP.String()), m.Path(), m.Need(), over, m.Carries, m.Need())
}

func orUnknown(s string) string {
	if s == "" || s == "invalid IP" {
		return "the peer"
	}
	return s
}

// SearchRounds is how many rounds the search of a path's size takes at
// most after a black hole is found, for a device of mtu bytes (IPv4's
// smallest echo onwards): the interval shrinks to a quarter a round.
func SearchRounds(mtu int) int {
	w, n := mtu-minSize(false), 0
	for w > 1 {
		w = (w + searchSplits) / (searchSplits + 1)
		n++
	}
	return n
}

// PathMTUBound is the time within which a path MTU black hole on the way
// to one of n peers is named with its size, while at most Sample peers
// are failing (each is re-probed every round): its turn in the rotation
// finds it (Period), the search takes SearchRounds more rounds, and the
// last check its timeout.
func (p *Prober) PathMTUBound(n, mtu int) time.Duration {
	return p.Period(n) + time.Duration(SearchRounds(mtu))*p.cfg.Interval + p.cfg.Timeout
}
