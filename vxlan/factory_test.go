//go:build linux

package vxlan

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/lease"
)

// TestFactoryDirectRouting: with Backend.DirectRouting, an admitted peer on
// the underlay's network is routed to directly and one elsewhere is
// encapsulated; after the underlay moves (SetUnderlay), the new network
// decides. Without it, no peer is direct. (The decision moved here from
// the agent, which no longer knows what DirectRouting is.)
func TestFactoryDirectRouting(t *testing.T) {
	near := lease.DatapathPeer{Subnet: netip.MustParsePrefix("10.244.1.0/24"), PublicIP: netip.MustParseAddr("192.0.2.7"), MAC: lease.MAC{0x0e, 1}}
	far := lease.DatapathPeer{Subnet: netip.MustParsePrefix("10.244.2.0/24"), PublicIP: netip.MustParseAddr("198.51.100.7"), MAC: lease.MAC{0x0e, 2}}
	f := &famDatapath{direct: true}
	onLink := netip.MustParsePrefix("192.0.2.0/24")
	f.onLink.Store(&onLink)
	if p := f.peer(near); !p.Direct || p.VtepMAC != near.MAC {
		t.Errorf("a peer on the underlay's network: %+v, want direct", p)
	}
	if p := f.peer(far); p.Direct {
		t.Errorf("a peer elsewhere: %+v, want encapsulated", p)
	}
	f.onLink.Store(ptr(netip.MustParsePrefix("198.51.100.0/24")))
	if f.peer(near).Direct || !f.peer(far).Direct {
		t.Error("the underlay's new network does not decide")
	}
	off := &famDatapath{}
	off.onLink.Store(&onLink)
	if off.peer(near).Direct {
		t.Error("direct without DirectRouting")
	}
}

func ptr[T any](v T) *T { return &v }

// TestPublishedMAC: a datapath keeps the first published MAC for its VNI
// that is unicast; one for another VNI, a multicast one or a malformed
// record is passed over.
func TestPublishedMAC(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	s := lease.DatapathSetup{Published: func() []json.RawMessage {
		return []json.RawMessage{raw(`{"VNI":2,"VtepMAC":"0e:00:00:00:00:02"}`), raw(`not json`), raw(`{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}`),
			raw(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}`), raw(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:03"}`)}
	}}
	if mac, ok := publishedMAC(s, 1); !ok || mac.String() != "0e:00:00:00:00:01" {
		t.Errorf("publishedMAC = %v, %v; want 0e:00:00:00:00:01", mac, ok)
	}
	if _, ok := publishedMAC(lease.DatapathSetup{}, 1); ok {
		t.Error("a MAC from nothing published")
	}
}
