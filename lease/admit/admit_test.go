package admit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/lease"
)

var baseFacts = Facts{
	Node:       "me",
	Own:        lease.Key{IPv4: netip.MustParsePrefix("10.244.1.0/24")},
	Network:    netip.MustParsePrefix("10.244.0.0/16"),
	VNI:        1,
	Connected:  []netip.Prefix{netip.MustParsePrefix("172.30.0.1/24"), netip.MustParsePrefix("10.244.1.1/24")},
	Protected:  []netip.Prefix{netip.MustParsePrefix("10.244.200.7/32")},
	LocalAddrs: []netip.Addr{netip.MustParseAddr("172.30.0.1"), netip.MustParseAddr("10.244.1.0")},
}

// mkLease builds an IPv4 lease as a vxlan node writes it.
func mkLease(key, public, mac string, seniority int64, owner string) lease.Lease {
	k, err := lease.ParseKey(key)
	if err != nil {
		panic(err)
	}
	l := lease.Lease{Key: k, Seniority: seniority, Attrs: lease.Attrs{BackendType: "vxlan", Owner: owner}}
	if public != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(public)
	}
	if mac != "" {
		l.Attrs.BackendData = json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, mac))
	}
	return l
}

// TestStaticRules is the table of single-lease verdicts: every rule, its
// edges, and a valid peer beside each.
func TestStaticRules(t *testing.T) {
	ok := func(l lease.Lease) lease.Lease { return l }
	good := mkLease("10.244.3.0-24", "172.30.0.3", "0e:00:00:00:00:03", 10, "n3")
	with := func(f func(*lease.Lease)) lease.Lease {
		l := good
		l.Attrs.BackendData = append(json.RawMessage(nil), l.Attrs.BackendData...)
		f(&l)
		return l
	}
	data := func(s string) lease.Lease {
		return with(func(l *lease.Lease) { l.Attrs.BackendData = json.RawMessage(s) })
	}
	public := func(s string) lease.Lease {
		return with(func(l *lease.Lease) { l.Attrs.PublicIP = netip.MustParseAddr(s) })
	}
	key := func(s string) lease.Lease {
		return with(func(l *lease.Lease) { k, _ := lease.ParseKey(s); l.Key = k })
	}
	for _, tc := range []struct {
		name  string
		lease lease.Lease
		want  Reason
		say   string // in the detail
	}{
		{"valid", ok(good), "", ""},
		{"valid /32", key("10.244.9.7-32"), "", ""},
		{"valid /18", key("10.244.64.0-18"), "", ""},
		{"other backend", with(func(l *lease.Lease) { l.Attrs.BackendType = "host-gw" }), ReasonBackend, `"host-gw"`},
		{"no backend data", data(""), ReasonBackend, "missing"},
		{"backend data not an object", data(`[1,2]`), ReasonBackend, "not a"},
		{"backend data without a MAC", data(`{"VNI":1}`), ReasonBackend, "no VtepMAC"},
		{"MAC not a MAC", data(`{"VNI":1,"VtepMAC":"zz"}`), ReasonBackend, "not a 6-byte"},
		{"MAC of 8 bytes", data(`{"VNI":1,"VtepMAC":"00:11:22:33:44:55:66:77"}`), ReasonBackend, "not a 6-byte"},
		{"other VNI", data(`{"VNI":2,"VtepMAC":"0e:00:00:00:00:03"}`), ReasonBackend, "VNI 2"},
		{"no VNI", data(`{"VtepMAC":"0e:00:00:00:00:03"}`), ReasonBackend, "VNI 0"},
		{"zero MAC", data(`{"VNI":1,"VtepMAC":"00:00:00:00:00:00"}`), ReasonVtepMAC, "zeros"},
		{"broadcast MAC", data(`{"VNI":1,"VtepMAC":"ff:ff:ff:ff:ff:ff"}`), ReasonVtepMAC, "multicast"},
		{"multicast MAC", data(`{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}`), ReasonVtepMAC, "multicast"},
		{"no public IP", with(func(l *lease.Lease) { l.Attrs.PublicIP = netip.Addr{} }), ReasonPublicIP, "not set"},
		{"loopback", public("127.0.0.1"), ReasonPublicIP, "loopback"},
		{"loopback other", public("127.9.9.9"), ReasonPublicIP, "loopback"},
		{"multicast", public("224.0.0.1"), ReasonPublicIP, "multicast"},
		{"multicast admin", public("239.1.1.1"), ReasonPublicIP, "multicast"},
		{"broadcast", public("255.255.255.255"), ReasonPublicIP, "broadcast"},
		{"directed broadcast", public("172.30.0.255"), ReasonPublicIP, "broadcast address of 172.30.0.0/24"},
		{"link-local", public("169.254.1.1"), ReasonPublicIP, "link-local"},
		{"this network", public("0.1.2.3"), ReasonPublicIP, "reserved"},
		{"class E", public("240.0.0.1"), ReasonPublicIP, "reserved"},
		{"this node's address", public("172.30.0.1"), ReasonPublicIP, "own addresses"},
		{"this node's VTEP address", public("10.244.1.0"), ReasonPublicIP, "own addresses"},
		{"half the address space", key("128.0.0.0-1"), ReasonSubnet, "not a subnet of the Network"},
		{"host bits set", with(func(l *lease.Lease) { l.Key.IPv4 = netip.MustParsePrefix("10.244.3.77/24") }), ReasonSubnet, "host bits"},
		{"outside the network", key("10.245.3.0-24"), ReasonSubnet, "not a subnet"},
		{"the network itself", key("10.244.0.0-16"), ReasonSubnet, "not a subnet"},
		{"wider than the network", key("10.0.0.0-8"), ReasonSubnet, "not a subnet"},
		{"own subnet", key("10.244.1.0-24"), "", ""}, // the own key is not a peer at all
		{"inside own subnet", key("10.244.1.128-25"), ReasonOwnSubnet, "10.244.1.0/24"},
		{"containing own subnet", key("10.244.0.0-23"), ReasonOwnSubnet, "10.244.1.0/24"},
		{"control plane", key("10.244.200.7-32"), ReasonProtected, "control plane"},
		{"control plane inside", key("10.244.200.0-24"), ReasonProtected, "control plane"},
		{"VNI over 24 bits", data(`{"VNI":16777217,"VtepMAC":"0e:00:00:00:00:03"}`), ReasonBackend, "VNI 16777217 is not"},
		{"VNI that wraps to this one", data(`{"VNI":4294967297,"VtepMAC":"0e:00:00:00:00:03"}`), ReasonBackend, "is not a VXLAN"},
		{"value over a limit", lease.Lease{Key: good.Key, Seniority: 10, Invalid: "value is 1048576 bytes, over the limit of 16384"}, ReasonValue, "over the limit of 16384"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, verdicts := Compute(baseFacts, []lease.Lease{tc.lease})
			if tc.lease.Key == baseFacts.Own {
				if len(verdicts) != 0 {
					t.Fatalf("own lease judged as a peer: %+v", verdicts)
				}
				return
			}
			if len(verdicts) != 1 {
				t.Fatalf("%d verdicts, want 1: %+v", len(verdicts), verdicts)
			}
			v := verdicts[0]
			if v.Reason != tc.want || !strings.Contains(v.Detail, tc.say) {
				t.Fatalf("verdict %q %q; want %q mentioning %q", v.Reason, v.Detail, tc.want, tc.say)
			}
		})
	}
}

// TestConnectedPrefixes: a subnet over a connected network of another
// interface (docker0, say) is refused.
func TestConnectedPrefixes(t *testing.T) {
	f := baseFacts
	f.Network = netip.MustParsePrefix("172.16.0.0/12")
	f.Own = lease.Key{IPv4: netip.MustParsePrefix("172.20.1.0/24")}
	f.Connected = append(f.Connected, netip.MustParsePrefix("172.17.0.1/16"))
	_, v := Compute(f, []lease.Lease{
		mkLease("172.17.3.0-24", "172.30.0.3", "0e:00:00:00:00:03", 1, "a"),
		mkLease("172.30.0.0-25", "172.30.0.4", "0e:00:00:00:00:04", 2, "b"), // the underlay's
		mkLease("172.21.0.0-24", "172.30.0.5", "0e:00:00:00:00:05", 3, "c"),
	})
	want := []Reason{ReasonConnected, "", ReasonConnected} // sorted by subnet
	for i, r := range want {
		if v[i].Reason != r {
			t.Errorf("%s: %q, want %q (%s)", v[i].Peer.Key, v[i].Reason, r, v[i].Detail)
		}
	}
}

// TestConflicts: the older lease wins every kind of conflict, and the
// younger is admitted once the older goes.
func TestConflicts(t *testing.T) {
	honest := mkLease("10.244.3.0-24", "172.30.0.3", "0e:00:00:00:00:03", 10, "n3")
	for _, tc := range []struct {
		name    string
		hostile lease.Lease
		want    Reason
	}{
		{"same subnet, dual-stack key", func() lease.Lease {
			l := mkLease("10.244.3.0-24", "172.30.0.9", "0e:00:00:00:00:09", 20, "x")
			l.Key.IPv6 = netip.MustParsePrefix("fd00:1::/64")
			return l
		}(), ReasonSubnetConflict},
		{"longer inside", mkLease("10.244.3.128-25", "172.30.0.9", "0e:00:00:00:00:09", 20, "x"), ReasonSubnetConflict},
		{"shorter around", mkLease("10.244.2.0-23", "172.30.0.9", "0e:00:00:00:00:09", 20, "x"), ReasonSubnetConflict},
		{"MAC hijack", mkLease("10.244.9.0-24", "172.30.0.9", "0e:00:00:00:00:03", 20, "x"), ReasonIdentityConflict},
		{"public IP", mkLease("10.244.9.0-24", "172.30.0.3", "0e:00:00:00:00:09", 20, "x"), ReasonIdentityConflict},
		{"full clone of another owner", mkLease("10.244.9.0-24", "172.30.0.3", "0e:00:00:00:00:03", 20, "x"), ReasonIdentityConflict},
		{"unknown seniority loses", mkLease("10.244.9.0-24", "172.30.0.9", "0e:00:00:00:00:03", 0, "x"), ReasonIdentityConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][]lease.Lease{{honest, tc.hostile}, {tc.hostile, honest}} {
				tab := NewTable(baseFacts)
				for _, l := range order {
					tab.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Added, Lease: l}}})
				}
				adm := tab.Admitted(false)
				if len(adm) != 1 || adm[0].Key != honest.Key {
					t.Fatalf("admitted %+v, want only the honest lease", adm)
				}
				rej := tab.Rejected()
				if len(rej) != 1 || rej[0].Reason != tc.want || !strings.Contains(rej[0].Detail, "n3") {
					t.Fatalf("rejected %+v, want the hostile lease for %q naming n3", rej, tc.want)
				}
				// The honest lease goes: the other takes its place.
				d := tab.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Removed, Lease: honest}}})
				adm = tab.Admitted(false)
				if len(adm) != 1 || adm[0].Key != tc.hostile.Key {
					t.Fatalf("after the older went, admitted %+v", adm)
				}
				if len(d.Verdicts) != 1 || !d.Verdicts[0].Admitted() {
					t.Fatalf("readmission not reported: %+v", d.Verdicts)
				}
			}
		})
	}
}

// TestSameNodeMayShare: two leases of one node (moving subnets) share MAC
// and address; flannel's leases have no owner.
func TestSameNodeMayShare(t *testing.T) {
	for _, owner := range []string{"", "n3"} {
		a := mkLease("10.244.3.0-24", "172.30.0.3", "0e:00:00:00:00:03", 10, owner)
		b := mkLease("10.244.4.0-24", "172.30.0.3", "0e:00:00:00:00:03", 11, owner)
		adm, _ := Compute(baseFacts, []lease.Lease{a, b})
		if len(adm) != 2 {
			t.Errorf("owner %q: admitted %+v, want both", owner, adm)
		}
	}
}

// TestOwnIdentity: no peer may claim this node's VTEP MAC, and this node's
// other leases are not peers.
func TestOwnIdentity(t *testing.T) {
	own := mkLease("10.244.1.0-24", "172.30.0.1", "0e:00:00:00:00:01", 5, "me")
	old := mkLease("10.244.7.0-24", "172.30.0.1", "0e:00:00:00:00:01", 4, "me")
	thief := mkLease("10.244.9.0-24", "172.30.0.9", "0e:00:00:00:00:01", 3, "x")
	adm, v := Compute(baseFacts, []lease.Lease{own, old, thief})
	if len(adm) != 0 {
		t.Fatalf("admitted %+v", adm)
	}
	if len(v) != 1 || v[0].Reason != ReasonIdentityConflict || !strings.Contains(v[0].Detail, "this node's own") {
		t.Fatalf("verdicts %+v", v)
	}
}

// TestChainedShadowing: A shadows B, B would shadow C; C is admitted while
// B is out, and not when A goes and B comes in.
func TestChainedShadowing(t *testing.T) {
	a := mkLease("10.244.2.0-23", "172.30.0.2", "0e:00:00:00:00:02", 1, "a")
	b := mkLease("10.244.2.0-24", "172.30.0.3", "0e:00:00:00:00:03", 2, "b")
	c := mkLease("10.244.9.0-24", "172.30.0.4", "0e:00:00:00:00:03", 3, "c") // B's MAC
	tab := NewTable(baseFacts)
	tab.Apply(lease.Batch{Snapshot: true, Events: []lease.Event{{Type: lease.Added, Lease: a}, {Type: lease.Added, Lease: b}, {Type: lease.Added, Lease: c}}})
	if got := keys(tab.Admitted(false)); got != "10.244.2.0-23 10.244.9.0-24" {
		t.Fatalf("admitted %s", got)
	}
	d := tab.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Removed, Lease: a}}})
	if got := keys(tab.Admitted(false)); got != "10.244.2.0-24" {
		t.Fatalf("after A went, admitted %s", got)
	}
	var subnets []string
	for _, ch := range d.Changes {
		subnets = append(subnets, fmt.Sprintf("%s:%v", ch.Subnet, ch.Admitted))
	}
	if got := strings.Join(subnets, " "); got != "10.244.2.0/23:false 10.244.2.0/24:true 10.244.9.0/24:false" {
		t.Fatalf("changes %s", got)
	}
}

// TestFactsChange: a widened network admits what was outside; a new own
// subnet rejects the peer inside it.
func TestFactsChange(t *testing.T) {
	out := mkLease("10.245.3.0-24", "172.30.0.3", "0e:00:00:00:00:03", 1, "a")
	tab := NewTable(baseFacts)
	tab.Apply(lease.Batch{Snapshot: true, Events: []lease.Event{{Type: lease.Added, Lease: out}}})
	if len(tab.Admitted(false)) != 0 {
		t.Fatal("admitted outside the network")
	}
	f := baseFacts
	f.Network = netip.MustParsePrefix("10.0.0.0/8")
	d := tab.SetFacts(f)
	if len(d.Changes) != 1 || !d.Changes[0].Admitted {
		t.Fatalf("widening: %+v", d)
	}
	if d := tab.SetFacts(f); len(d.Changes)+len(d.Verdicts) != 0 {
		t.Fatalf("same facts again changed %+v", d)
	}
	f.Own = lease.Key{IPv4: netip.MustParsePrefix("10.245.0.0/16")}
	d = tab.SetFacts(f)
	if len(d.Changes) != 1 || d.Changes[0].Admitted || len(d.Verdicts) != 1 || d.Verdicts[0].Reason != ReasonOwnSubnet {
		t.Fatalf("own subnet: %+v", d)
	}
}

// TestNewsOncePerReason: a rejected lease rewritten with the same fault is
// not news again; a new fault is.
func TestNewsOncePerReason(t *testing.T) {
	bad := mkLease("10.244.3.0-24", "127.0.0.1", "0e:00:00:00:00:03", 1, "a")
	tab := NewTable(baseFacts)
	if d := tab.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Added, Lease: bad}}}); len(d.Verdicts) != 1 {
		t.Fatalf("first rejection: %+v", d.Verdicts)
	}
	bad.Attrs.Owner = "renamed"
	if d := tab.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Changed, Lease: bad}}}); len(d.Verdicts) != 0 {
		t.Fatalf("same fault again: %+v", d.Verdicts)
	}
	if d := tab.Apply(lease.Batch{Snapshot: true, Events: []lease.Event{{Type: lease.Added, Lease: bad}}}); len(d.Verdicts) != 0 {
		t.Fatalf("same fault in a new snapshot: %+v", d.Verdicts)
	}
	bad.Attrs.PublicIP = netip.MustParseAddr("224.0.0.1")
	if d := tab.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Changed, Lease: bad}}}); len(d.Verdicts) != 1 {
		t.Fatalf("new fault: %+v", d.Verdicts)
	}
	if c := tab.RejectedCounts(); c[ReasonPublicIP] != 1 || len(c) != 1 {
		t.Fatalf("counts %v", c)
	}
}

// TestFamilies: halves are judged apart, and a family the node does not run
// is ignored rather than rejected.
func TestFamilies(t *testing.T) {
	l := mkLease("10.244.3.0-24", "172.30.0.3", "0e:00:00:00:00:03", 1, "a")
	l.Key.IPv6 = netip.MustParsePrefix("fd00:1:0:3::/64")
	l.Attrs.PublicIPv6 = netip.MustParseAddr("::1")
	l.Attrs.BackendV6Data = json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:06:03"}`)
	_, v := Compute(baseFacts, []lease.Lease{l})
	if len(v) != 1 || !v[0].Admitted() {
		t.Fatalf("v4-only node: %+v", v)
	}
	f := baseFacts
	f.IPv6Network = netip.MustParsePrefix("fd00:1::/48")
	_, v = Compute(f, []lease.Lease{l})
	if len(v) != 2 || !v[0].Admitted() || v[1].Reason != ReasonPublicIP {
		t.Fatalf("dual-stack node: %+v", v)
	}
}

func keys(ps []Peer) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Key.String())
	}
	return strings.Join(s, " ")
}

// TestWideConnectedNetwork: an underlay that holds the whole overlay network
// (10.0.0.0/8 around 10.244.0.0/16) is the layout's intent, not a conflict;
// a connected network inside the overlay's range still is.
func TestWideConnectedNetwork(t *testing.T) {
	f := baseFacts
	f.Connected = []netip.Prefix{netip.MustParsePrefix("10.0.0.5/8"), netip.MustParsePrefix("10.244.250.1/24")}
	_, v := Compute(f, []lease.Lease{
		mkLease("10.244.3.0-24", "10.0.0.3", "0e:00:00:00:00:03", 1, "a"),
		mkLease("10.244.250.0-24", "10.0.0.4", "0e:00:00:00:00:04", 2, "b"),
	})
	if len(v) != 2 || !v[0].Admitted() || v[1].Reason != ReasonConnected {
		t.Fatalf("verdicts %+v", v)
	}
}

// TestSharedIdentityCost: many leases on one subnet, MAC or address are
// judged against the admitted peers only, so a snapshot of them costs
// O(N log N) and flapping the one admitted costs O(N log N), not O(N^2).
func TestSharedIdentityCost(t *testing.T) {
	for _, mode := range []string{"subnet", "mac", "ip"} {
		evs := sharedLeases(4000, mode)
		tab := NewTable(benchFacts)
		tab.Apply(lease.Batch{Snapshot: true, Events: evs})
		if n := len(tab.Admitted(false)); n != 1 {
			t.Fatalf("%s: %d admitted, want 1", mode, n)
		}
		// The oldest goes: the next takes its place.
		d := tab.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Removed, Lease: evs[0].Lease}}})
		if adm := tab.Admitted(false); len(adm) != 1 || adm[0].Key != evs[1].Lease.Key || len(d.Changes) == 0 {
			t.Fatalf("%s: after the oldest went, admitted %v", mode, keys(adm))
		}
	}
}

// TestInvalidNeverBlocks: a lease its source could not take (over a size
// limit) is rejected by the value rule, counted, and blocks no one: not an
// honest peer at its subnet, younger than it.
func TestInvalidNeverBlocks(t *testing.T) {
	honest := mkLease("10.244.3.0-24", "172.30.0.3", "0e:00:00:00:00:03", 20, "n3")
	padded := lease.Lease{Key: mustParseKey(t, "10.244.3.0-25"), Seniority: 10, Invalid: "value is 20000 bytes, over the limit of 16384"}
	tb := NewTable(baseFacts)
	d := tb.Apply(lease.Batch{Snapshot: true, Events: []lease.Event{{Type: lease.Added, Lease: padded}, {Type: lease.Added, Lease: honest}}})
	if len(d.Changes) != 1 || d.Changes[0].Peer.Key != honest.Key {
		t.Fatalf("changes %+v, want the honest peer alone", d.Changes)
	}
	if len(d.Verdicts) != 1 || d.Verdicts[0].Reason != ReasonValue || d.Verdicts[0].Peer.Key != padded.Key {
		t.Fatalf("verdicts %+v, want the padded lease's, by the value rule", d.Verdicts)
	}
	if got := tb.RejectedCounts()[ReasonValue]; got != 1 {
		t.Errorf("%d rejected by the value rule, want 1", got)
	}
	// Written again within the limits, it is judged by the other rules:
	// older, it wins the subnet.
	fixed := mkLease("10.244.3.0-25", "172.30.0.9", "0e:00:00:00:00:09", 10, "n9")
	tb.Apply(lease.Batch{Events: []lease.Event{{Type: lease.Changed, Lease: fixed}}})
	if got := tb.RejectedCounts(); got[ReasonValue] != 0 || got[ReasonSubnetConflict] != 1 {
		t.Errorf("rejections after the fix %v, want the honest, younger, peer's subnet conflict alone", got)
	}
	if _, ok := tb.AdmittedAt(false, fixed.Key.IPv4); !ok {
		t.Error("the fixed lease is not admitted")
	}
}

func mustParseKey(t *testing.T, s string) lease.Key {
	t.Helper()
	k, err := lease.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
