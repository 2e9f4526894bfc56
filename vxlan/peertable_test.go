//go:build linux

package vxlan

import (
	"github.com/weftnet/weft/lease"
	"net/netip"
	"testing"
	"time"
)

func tpeer(subnet string, public string, mac byte, direct bool) Peer {
	return Peer{Subnet: netip.MustParsePrefix(subnet), PublicIP: netip.MustParseAddr(public), VtepMAC: lease.MAC{0x0e, 0, 0, 0, 0, mac}, Direct: direct}
}

// checkTable asserts what t says about subnet s.
func checkTable(t *testing.T, tb *peerTable, s netip.Prefix, wantPeer Peer, wanted bool, wrote Peer, state writeState, asWanted bool) {
	t.Helper()
	if p, ok := tb.wanted(s); ok != wanted || (wanted && p != wantPeer) {
		t.Errorf("wanted(%s) = %v, %v; want %v, %v", s, p, ok, wantPeer, wanted)
	}
	if p, st := tb.lastWritten(s); st != state || (st != notWritten && p != wrote) {
		t.Errorf("lastWritten(%s) = %v, %v; want %v, %v", s, p, st, wrote, state)
	}
	if got := tb.writtenAsWanted(s); got != asWanted {
		t.Errorf("writtenAsWanted(%s) = %v, want %v", s, got, asWanted)
	}
}

// TestPeerTableLifecycle walks one subnet through every transition: wanted,
// written, changed, changed back, failed, unwanted and forgotten.
func TestPeerTableLifecycle(t *testing.T) {
	tb := newPeerTable()
	p1 := tpeer("10.244.1.0/24", "192.0.2.1", 1, false)
	p2 := tpeer("10.244.1.0/24", "192.0.2.1", 2, false) // a new VTEP MAC
	s := p1.Subnet

	checkTable(t, &tb, s, Peer{}, false, Peer{}, notWritten, false)
	tb.want(p1)
	checkTable(t, &tb, s, p1, true, Peer{}, notWritten, false)
	tb.setWritten(p1, 7, "", 0)
	checkTable(t, &tb, s, p1, true, p1, written, true)
	if tb.id(s) != 7 || tb.idOwner[7] != s {
		t.Errorf("id %d, owner of 7 %v", tb.id(s), tb.idOwner[7])
	}
	tb.want(p2)
	checkTable(t, &tb, s, p2, true, p1, written, false)
	tb.want(p1)
	checkTable(t, &tb, s, p1, true, p1, written, true)
	if len(tb.wrote) != 0 {
		t.Errorf("wrote kept %v for a peer written as wanted", tb.wrote)
	}
	tb.want(p2)
	tb.setWritten(p2, 8, "boom", ObjectFDB|ObjectRoute)
	checkTable(t, &tb, s, p2, true, p2, writeFailed, false)
	if _, ok := tb.idOwner[7]; ok || tb.idOwner[8] != s {
		t.Errorf("idOwner %v after the id moved from 7 to 8", tb.idOwner)
	}
	needs := func(Peer) Objects { return ObjectRoute | ObjectNeighbour | ObjectFDB }
	st := tb.statuses(needs)
	if len(st) != 1 || st[0].Changed.IsZero() {
		t.Fatalf("statuses %+v", st)
	}
	changed := st[0].Changed
	st[0].Changed = time.Time{}
	if want := (PeerStatus{Peer: p2, Desired: p2, Wanted: true, NexthopID: 8, Err: "boom", Needs: needs(p2), Missing: ObjectFDB | ObjectRoute}); st[0] != want {
		t.Errorf("statuses %+v, want %+v", st[0], want)
	}
	tb.want(p2) // unchanged: the time of the last change stays
	if st := tb.statuses(needs); st[0].Changed != changed {
		t.Errorf("wanting the same peer again moved its last change from %v to %v", changed, st[0].Changed)
	}
	tb.unwant(s)
	checkTable(t, &tb, s, Peer{}, false, p2, writeFailed, false)
	if st := tb.statuses(needs); len(st) != 1 || st[0].Wanted || st[0].Needs != 0 {
		t.Errorf("an unwanted subnet's writes: status %+v, want one, not wanted", st)
	}
	tb.forget(s)
	checkTable(t, &tb, s, Peer{}, false, Peer{}, notWritten, false)
	if len(tb.recs)+len(tb.idOwner)+len(tb.wrote)+len(tb.errs)+len(tb.byMAC)+len(tb.sharedMAC)+len(tb.gwBits) != 0 {
		t.Errorf("forgotten table not empty: %+v", tb)
	}
}

// TestPeerTableWantOnly: replacing the set keeps what was written for
// subnets no longer wanted (until forgotten), drops records that hold
// nothing, and rebuilds the indexes.
func TestPeerTableWantOnly(t *testing.T) {
	tb := newPeerTable()
	a := tpeer("10.244.1.0/24", "192.0.2.1", 1, false)
	b := tpeer("10.244.2.0/24", "192.0.2.2", 2, false)
	c := tpeer("10.244.3.0/24", "192.0.2.3", 3, false)
	tb.wantOnly([]Peer{a, b})
	tb.setWritten(a, 1, "", 0)
	tb.wantOnly([]Peer{c})
	checkTable(t, &tb, a.Subnet, Peer{}, false, a, written, false)
	checkTable(t, &tb, b.Subnet, Peer{}, false, Peer{}, notWritten, false)
	checkTable(t, &tb, c.Subnet, c, true, Peer{}, notWritten, false)
	if _, ok := tb.recs[b.Subnet]; ok {
		t.Error("a record that holds nothing was kept")
	}
	if _, ok := tb.fdbHolder(a.VtepMAC); ok {
		t.Error("an unwanted peer's MAC is still indexed")
	}
	if p, ok := tb.fdbHolder(c.VtepMAC); !ok || p != c {
		t.Errorf("fdbHolder(c) = %v, %v", p, ok)
	}
	if got := tb.wantedSubnets(); len(got) != 1 || got[0] != c.Subnet {
		t.Errorf("wantedSubnets %v, want [%s]", got, c.Subnet)
	}
	// Wanted again: written as wanted once more, with nothing kept aside.
	tb.wantOnly([]Peer{a, c, c})
	checkTable(t, &tb, a.Subnet, a, true, a, written, true)
	if got := tb.wantedSubnets(); len(got) != 2 || tb.gwBits[24] != 2 {
		t.Errorf("wantedSubnets %v, gwBits %v after a duplicate", got, tb.gwBits)
	}
	tb.dropWrites()
	checkTable(t, &tb, a.Subnet, a, true, Peer{}, notWritten, false)
	if tb.id(a.Subnet) != 0 || len(tb.idOwner) != 0 {
		t.Error("dropWrites kept a nexthop id")
	}
}

// TestPeerTableWantOnlyKeepsChanged: a full set that wants a peer as it
// was keeps the peer's time of last change; one that changes the peer, or
// lets it go, moves it.
func TestPeerTableWantOnlyKeepsChanged(t *testing.T) {
	tb := newPeerTable()
	a, b := tpeer("10.244.1.0/24", "192.0.2.1", 1, false), tpeer("10.244.2.0/24", "192.0.2.2", 2, false)
	tb.wantOnly([]Peer{a, b})
	changed := func(s netip.Prefix) int64 { return tb.recs[s].changed }
	ta, tb0 := changed(a.Subnet), changed(b.Subnet)
	if ta == 0 || tb0 == 0 {
		t.Fatal("no time of last change after the first set")
	}
	time.Sleep(time.Millisecond)
	b2 := tpeer("10.244.2.0/24", "192.0.2.9", 2, false) // moved
	tb.wantOnly([]Peer{a, b2})
	if changed(a.Subnet) != ta {
		t.Errorf("an unchanged peer's last change moved from %d to %d", ta, changed(a.Subnet))
	}
	if changed(b.Subnet) <= tb0 {
		t.Errorf("a moved peer's last change stayed at %d", changed(b.Subnet))
	}
	tb.setWritten(a, 0, "", 0)
	time.Sleep(time.Millisecond)
	tb.wantOnly([]Peer{b2})
	if changed(a.Subnet) <= ta {
		t.Errorf("a peer let go kept its last change %d", changed(a.Subnet))
	}
}

// TestPeerTableSharedMAC: one node holding two leases while it moves shows
// one MAC on two subnets; the first in subnet order holds the FDB entry,
// and the next takes over when it goes.
func TestPeerTableSharedMAC(t *testing.T) {
	tb := newPeerTable()
	hi := tpeer("10.244.9.0/24", "192.0.2.1", 1, false)
	lo := tpeer("10.244.2.0/24", "192.0.2.1", 1, false)
	mid := tpeer("10.244.5.0/24", "192.0.2.7", 1, false)
	for _, p := range []Peer{hi, lo, mid} {
		tb.want(p)
	}
	if p, _ := tb.fdbHolder(hi.VtepMAC); p != lo {
		t.Errorf("holder %v, want the lowest subnet %v", p, lo)
	}
	if p, ok := tb.macSharer(hi.VtepMAC, lo.Subnet); !ok || p.Subnet == lo.Subnet {
		t.Errorf("macSharer(lo) = %v, %v", p, ok)
	}
	tb.unwant(lo.Subnet)
	if p, _ := tb.fdbHolder(hi.VtepMAC); p != mid {
		t.Errorf("holder %v after the lowest went, want %v", p, mid)
	}
	tb.unwant(hi.Subnet)
	if p, ok := tb.macSharer(hi.VtepMAC, mid.Subnet); ok {
		t.Errorf("macSharer found %v with one peer left", p)
	}
	tb.unwant(mid.Subnet)
	if len(tb.byMAC)+len(tb.sharedMAC) != 0 {
		t.Errorf("MAC index not empty: %v %v", tb.byMAC, tb.sharedMAC)
	}
}

// TestPeerTableByGateway: a VXLAN peer is found by its gateway (its
// subnet's first address) whatever its subnet length; a direct peer, which
// has no neighbour entry, is not.
func TestPeerTableByGateway(t *testing.T) {
	tb := newPeerTable()
	p24 := tpeer("10.244.1.0/24", "192.0.2.1", 1, false)
	p26 := tpeer("10.245.0.64/26", "192.0.2.2", 2, false)
	direct := tpeer("10.244.7.0/24", "192.0.2.3", 3, true)
	for _, p := range []Peer{p24, p26, direct} {
		tb.want(p)
	}
	for _, tc := range []struct {
		ip   string
		want Peer
		ok   bool
	}{
		{"10.244.1.0", p24, true},
		{"10.245.0.64", p26, true},
		{"10.244.1.1", Peer{}, false},
		{"10.244.7.0", Peer{}, false},
		{"10.9.9.9", Peer{}, false},
	} {
		if p, ok := tb.byGateway(netip.MustParseAddr(tc.ip)); ok != tc.ok || p != tc.want {
			t.Errorf("byGateway(%s) = %v, %v; want %v, %v", tc.ip, p, ok, tc.want, tc.ok)
		}
	}
	tb.unwant(p26.Subnet)
	if _, ok := tb.gwBits[26]; ok {
		t.Error("a subnet length no peer uses is still searched")
	}
}
