package admit

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
)

// reference judges leases the slow, obvious way: every peer in rank order,
// against every one admitted before it and this node's own lease.
func reference(f Facts, leases []lease.Lease) map[string]Reason {
	f = f.normalize()
	out := map[string]Reason{}
	for _, ipv6 := range []bool{false, true} {
		if !f.network(ipv6).IsValid() {
			continue
		}
		var accepted, peers []*cand
		for _, l := range leases {
			d, ok := decode(l, ipv6)
			switch {
			case !ok:
			case f.Own.IsValid() && l.Key == f.Own:
				accepted = append(accepted, d)
			case f.Node != "" && l.Attrs.Owner == f.Node:
			default:
				peers = append(peers, d)
			}
		}
		slices.SortFunc(peers, func(a, b *cand) int {
			return lease.CompareSeniority(a.seniority, a.key.Key(), b.seniority, b.key.Key())
		})
		for _, p := range peers {
			r, _ := p.staticRules(&f)
			if r == "" {
				for _, q := range accepted {
					if q.subnet().Overlaps(p.subnet()) {
						r = ReasonSubnetConflict
						break
					}
				}
			}
			if r == "" {
				for _, q := range accepted {
					if (q.mac == p.mac || q.public == p.public) && !q.sameNode(p) {
						r = ReasonIdentityConflict
						break
					}
				}
			}
			if r == "" {
				accepted = append(accepted, p)
			}
			out[fmt.Sprint(ipv6, p.key.Key())] = r
		}
	}
	return out
}

// check compares a table with the reference and with a table built from
// scratch, and checks the safety invariants of its admitted set.
func check(t testing.TB, tab *Table, leases map[lease.Key]lease.Lease, mirror map[string]Peer) {
	t.Helper()
	var all []lease.Lease
	for _, l := range leases {
		all = append(all, l)
	}
	want := reference(tab.Facts(), all)
	got := map[string]Reason{}
	for _, v := range tab.Verdicts() {
		got[fmt.Sprint(v.Peer.IPv6, v.Peer.Key)] = v.Reason
	}
	for k, r := range want {
		if got[k] != r {
			t.Fatalf("%s: table says %q, reference %q", k, got[k], r)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("table judged %d candidates, reference %d", len(got), len(want))
	}
	adm, verdicts := Compute(tab.Facts(), all)
	inc := append(tab.Admitted(false), tab.Admitted(true)...)
	if !slices.Equal(adm, inc) {
		t.Fatalf("incremental admitted\n%v\nfrom scratch\n%v", inc, adm)
	}
	// A conflict's detail names one of the leases that block it, which
	// may differ with the history; the rest must be equal.
	incV := tab.Verdicts()
	if len(incV) != len(verdicts) {
		t.Fatalf("incremental verdicts: %d, from scratch %d", len(incV), len(verdicts))
	}
	for i := range incV {
		a, b := incV[i], verdicts[i]
		if a.Peer != b.Peer || a.Reason != b.Reason || (a.Reason != "") != (a.Detail != "") {
			t.Fatalf("incremental verdict\n%+v\nfrom scratch\n%+v", a, b)
		}
		if a.Reason == ReasonSubnetConflict || a.Reason == ReasonIdentityConflict {
			if !strings.Contains(a.Detail, "older") {
				t.Fatalf("conflict without a blocker named: %+v", a)
			}
		} else if a.Detail != b.Detail {
			t.Fatalf("incremental verdict\n%+v\nfrom scratch\n%+v", a, b)
		}
	}
	// The deltas, applied in turn, give the admitted set.
	if len(mirror) != len(inc) {
		t.Fatalf("deltas give %d admitted, table %d", len(mirror), len(inc))
	}
	for _, p := range inc {
		m, ok := mirror[fmt.Sprint(p.IPv6, p.Subnet)]
		if !ok || m != p {
			t.Fatalf("deltas give %+v at %s, table %+v", m, p.Subnet, p)
		}
	}
	// No two admitted peers of a family overlap or share an identity
	// across nodes; none overlaps this node's subnet.
	f := tab.Facts()
	for i, p := range inc {
		if own := ownHalf(f.Own, p.IPv6); own.IsValid() && own.Overlaps(p.Subnet) {
			t.Fatalf("admitted %v overlaps own %v", p.Subnet, own)
		}
		for _, q := range inc[i+1:] {
			if p.IPv6 != q.IPv6 {
				continue
			}
			if p.Subnet.Overlaps(q.Subnet) {
				t.Fatalf("admitted %v and %v overlap", p.Subnet, q.Subnet)
			}
			if (p.VtepMAC == q.VtepMAC || p.PublicIP == q.PublicIP) && (p.Owner != q.Owner || p.VtepMAC != q.VtepMAC || p.PublicIP != q.PublicIP) {
				t.Fatalf("admitted %v and %v share an identity across nodes", p.Key, q.Key)
			}
		}
	}
}

func applyDelta(mirror map[string]Peer, d Delta) {
	for _, c := range d.Changes {
		k := fmt.Sprint(c.IPv6, c.Subnet)
		if c.Admitted {
			mirror[k] = c.Peer
		} else {
			delete(mirror, k)
		}
	}
}

// randomLease draws from small pools, so that overlaps, shared MACs and
// addresses, equal seniorities and bad values are all common.
func randomLease(r *rand.Rand) lease.Lease {
	bits := 22 + r.IntN(5)
	addr := netip.AddrFrom4([4]byte{10, 244, byte(r.IntN(8)), byte(r.IntN(4) * 64)})
	if r.IntN(12) == 0 {
		addr = netip.AddrFrom4([4]byte{10, 245, 0, 0})
	}
	k := lease.Key{IPv4: netip.PrefixFrom(addr, bits).Masked()}
	if r.IntN(4) == 0 {
		k.IPv6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 4: byte(r.IntN(4)), 7: byte(r.IntN(3))}), 56+r.IntN(3)*4).Masked()
		if r.IntN(3) == 0 {
			k.IPv4 = netip.Prefix{}
		}
	}
	owners := []string{"", "a", "b", "c", "d", "me"}
	l := lease.Lease{Key: k, Seniority: int64(r.IntN(12)), Attrs: lease.Attrs{BackendType: "vxlan", Owner: owners[r.IntN(len(owners))]}}
	ips := []string{"172.30.0.2", "172.30.0.3", "172.30.0.4", "172.30.0.5", "172.30.0.1", "127.0.0.1"}
	l.Attrs.PublicIP = netip.MustParseAddr(ips[r.IntN(len(ips))])
	l.Attrs.PublicIPv6 = netip.AddrFrom16([16]byte{0xfd, 0x30, 15: byte(2 + r.IntN(4))})
	mac := func() string {
		if r.IntN(15) == 0 {
			return "01:00:5e:00:00:01"
		}
		return fmt.Sprintf("0e:00:00:00:00:%02x", r.IntN(5))
	}
	vni := 1
	if r.IntN(20) == 0 {
		vni = 2
	}
	l.Attrs.BackendData = json.RawMessage(fmt.Sprintf(`{"VNI":%d,"VtepMAC":%q}`, vni, mac()))
	l.Attrs.BackendV6Data = json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, mac()))
	return l
}

func randomFacts(r *rand.Rand) Facts {
	f := baseFacts
	f.IPv6Network = netip.MustParsePrefix("fd00::/32")
	switch r.IntN(4) {
	case 0:
		f.Own = lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(r.IntN(8)), 0}), 24)}
	case 1:
		f.Own = lease.Key{}
	case 2:
		f.Network = netip.MustParsePrefix("10.0.0.0/8")
	case 3:
		f.IPv6Network = netip.Prefix{}
		f.Protected = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(r.IntN(8)), 9}), 32)}
	}
	return f
}

// TestPropertyIncrementalEqualsScratch drives random histories of honest
// and hostile lease events and fact changes through a Table. After every
// step its verdicts equal the reference's and a fresh Table's, its deltas
// add up to its admitted set, and the admitted set is conflict-free.
func TestPropertyIncrementalEqualsScratch(t *testing.T) {
	for seed := range uint64(150) {
		r := rand.New(rand.NewPCG(seed, 7))
		tab := NewTable(randomFacts(r))
		leases := map[lease.Key]lease.Lease{}
		mirror := map[string]Peer{}
		for step := range 60 {
			switch n := r.IntN(20); {
			case n == 0:
				applyDelta(mirror, tab.SetFacts(randomFacts(r)))
			case n == 1:
				// A snapshot, whole or in parts, with the facts
				// changing between parts, after a start that failed
				// midway at times. Until its last part the table
				// holds what it held: the leases before.
				if r.IntN(3) == 0 {
					var junk []lease.Event
					for range 1 + r.IntN(4) {
						junk = append(junk, lease.Event{Type: lease.Added, Lease: randomLease(r)})
					}
					if d := tab.Apply(lease.Batch{Snapshot: true, More: true, Events: junk}); len(d.Changes)+len(d.Verdicts) > 0 {
						t.Fatalf("seed %d step %d: a snapshot's first part changed %+v", seed, step, d)
					}
				}
				next := map[lease.Key]lease.Lease{}
				var evs []lease.Event
				for range r.IntN(12) {
					l := randomLease(r)
					next[l.Key] = l
				}
				for _, l := range next {
					evs = append(evs, lease.Event{Type: lease.Added, Lease: l})
				}
				parts := 1 + r.IntN(3)
				for i := range parts {
					part := evs[i*len(evs)/parts : (i+1)*len(evs)/parts]
					if i > 0 && r.IntN(3) == 0 {
						applyDelta(mirror, tab.SetFacts(randomFacts(r)))
						check(t, tab, leases, mirror)
					}
					d := tab.Apply(lease.Batch{Snapshot: true, Part: i, More: i < parts-1, Events: part})
					if i < parts-1 {
						if len(d.Changes)+len(d.Verdicts) > 0 {
							t.Fatalf("seed %d step %d: part %d of %d changed %+v", seed, step, i, parts, d)
						}
						check(t, tab, leases, mirror)
					}
					applyDelta(mirror, d)
				}
				leases = next
			default:
				var evs []lease.Event
				for range 1 + r.IntN(4) {
					l := randomLease(r)
					if old, ok := leases[l.Key]; ok && r.IntN(2) == 0 {
						delete(leases, l.Key)
						evs = append(evs, lease.Event{Type: lease.Removed, Lease: old})
						continue
					}
					typ := lease.Added
					if _, ok := leases[l.Key]; ok {
						typ = lease.Changed
					}
					leases[l.Key] = l
					evs = append(evs, lease.Event{Type: typ, Lease: l})
				}
				applyDelta(mirror, tab.Apply(lease.Batch{Events: evs}))
			}
			if t.Failed() {
				return
			}
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("seed %d step %d: %v", seed, step, p)
					}
				}()
				check(t, tab, leases, mirror)
			}()
		}
	}
}
