//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// TestAdmittedLeasesDualStack: the saved peer set holds each lease once,
// by key, with the halves admission admitted: both for a dual-stack peer,
// one for a peer of one family, each half's backend data as the peer
// gave it.
func TestAdmittedLeasesDualStack(t *testing.T) {
	facts := admit.Facts{Node: "me", Own: lease.Key{IPv4: netip.MustParsePrefix("10.0.0.0/24"), IPv6: netip.MustParsePrefix("fd00::/64")},
		Network: netip.MustParsePrefix("10.0.0.0/16"), IPv6Network: netip.MustParsePrefix("fd00::/48"), BackendType: "vxlan", VNI: 1}
	n := &Network{table: admit.NewTable(facts), v4: stubDatapath{}, v6: stubDatapath{}, backend: []byte(`{"Type":"vxlan","VNI":1}`), backendType: "vxlan"}
	mk := func(i int, v4, v6 bool) lease.Lease {
		l := lease.Lease{Seniority: int64(i), Attrs: lease.Attrs{BackendType: "vxlan", Owner: fmt.Sprint("n", i)}}
		if v4 {
			l.Key.IPv4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24)
			l.Attrs.PublicIP = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
			l.Attrs.BackendData = admit.AppendBackendData(nil, 1, lease.MAC{0x0e, 0, 0, 0, 4, byte(i)})
		}
		if v6 {
			l.Key.IPv6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 7: byte(i)}), 64)
			l.Attrs.PublicIPv6 = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
			l.Attrs.BackendV6Data = admit.AppendBackendData(nil, 1, lease.MAC{0x0e, 0, 0, 0, 6, byte(i)})
		}
		return l
	}
	want := []lease.Lease{mk(3, true, true), mk(1, true, true), mk(2, true, false), mk(4, false, true), mk(5, true, true)}
	var evs []lease.Event
	for _, l := range want {
		evs = append(evs, lease.Event{Type: lease.Added, Lease: l})
	}
	if d := n.table.Apply(lease.Batch{Snapshot: true, Events: evs}); len(d.Verdicts) > 0 {
		t.Fatalf("rejected: %+v", d.Verdicts)
	}
	slices.SortFunc(want, func(a, b lease.Lease) int { return a.Key.Compare(b.Key) })
	got := n.admittedLeasesLocked()
	if len(got) != len(want) {
		t.Fatalf("%d leases saved, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if g, w := got[i], want[i]; g.Key != w.Key || g.Seniority != w.Seniority || !g.Attrs.Equal(w.Attrs) {
			t.Errorf("lease %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// stubDatapath is a datapath that programs nothing, for tests of the
// agent's own state.
type stubDatapath struct{}

func (stubDatapath) BackendData() json.RawMessage              { return nil }
func (stubDatapath) Run(ctx context.Context) error             { <-ctx.Done(); return ctx.Err() }
func (stubDatapath) SetSubnet(netip.Prefix)                    {}
func (stubDatapath) SetUnderlay(netip.Addr, int, netip.Prefix) {}
func (stubDatapath) SetPeers([]lease.DatapathPeer) error       { return nil }
func (stubDatapath) SetPeer(lease.DatapathPeer) error          { return nil }
func (stubDatapath) RemovePeer(netip.Prefix) error             { return nil }
func (stubDatapath) Report() lease.DatapathReport              { return lease.DatapathReport{Synced: true} }
func (stubDatapath) Close()                                    {}
