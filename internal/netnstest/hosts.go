package netnstest

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Underlay is the name of each host's interface on the shared segment.
const Underlay = "eth0"

// A Host is a simulated machine: a namespace whose interface eth0 sits on a
// shared L2 segment with the other hosts, addressed 172.30.0.<i>/24 and
// fd30::<i>/64.
type Host struct {
	*Namespace
	Index int
	Addr  netip.Prefix // IPv4 underlay address, e.g. 172.30.0.1/24
	Addr6 netip.Prefix // IPv6 underlay address, e.g. fd30::1/64
}

// A Segment is an L2 network of hosts: a bridge in a namespace of its own,
// with a veth pair to each host.
type Segment struct {
	Bridge *Namespace
	Hosts  []*Host
}

// NewSegment creates n hosts on one L2 segment. Everything is removed by
// t.Cleanup.
func NewSegment(t T, n int) *Segment {
	t.Helper()
	RequirePrivileged(t)
	if n < 1 || n > 250 {
		t.Fatalf("netnstest: %d hosts; want 1 to 250", n)
	}
	s := &Segment{Bridge: NewNamespace(t, "weft-l2")}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	nl := s.Bridge.Netlink()
	if err := nl.LinkAdd(br); err != nil {
		t.Fatalf("netnstest: bridge: %v", err)
	}
	if err := nl.LinkSetUp(br); err != nil {
		t.Fatalf("netnstest: bridge up: %v", err)
	}
	for i := 1; i <= n; i++ {
		h := &Host{
			Namespace: NewNamespace(t, fmt.Sprintf("weft-h%d", i)),
			Index:     i,
			Addr:      netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 30, 0, byte(i)}), 24),
			Addr6:     netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x30, 15: byte(i)}), 64),
		}
		s.plug(t, h, fmt.Sprintf("p%d", i), Underlay)
		h.AddrAdd(t, Underlay, h.Addr)
		h.AddrAdd(t, Underlay, h.Addr6)
		s.Hosts = append(s.Hosts, h)
	}
	return s
}

// plug connects h to the segment's bridge through a veth pair, the
// bridge's end named port and the host's name, both up.
func (s *Segment) plug(t T, h *Host, port, name string) {
	t.Helper()
	// The veth is created in the bridge's namespace with its peer placed
	// straight into the host's, so nothing ever appears in the namespace
	// the test runs in.
	nl := s.Bridge.Netlink()
	br, err := nl.LinkByName("br0")
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index},
		PeerName:      name,
		PeerNamespace: netlink.NsFd(h.Handle),
	}
	if err := nl.LinkAdd(veth); err != nil {
		t.Fatalf("netnstest: veth for %s: %v", h.Name, err)
	}
	if err := nl.LinkSetUp(veth); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	eth, err := h.Netlink().LinkByName(name)
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if err := h.Netlink().LinkSetUp(eth); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
}

// ReplaceUnderlay swaps h's interface on the segment for a new one, as
// when a NIC is replaced: the interface named old is deleted (with its
// veth pair), and one named name is plugged into the bridge and given
// addrs.
func (s *Segment) ReplaceUnderlay(t T, h *Host, old, name string, addrs ...netip.Prefix) {
	t.Helper()
	link, err := h.Netlink().LinkByName(old)
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if err := h.Netlink().LinkDel(link); err != nil {
		t.Fatalf("netnstest: delete %s: %v", old, err)
	}
	s.plug(t, h, fmt.Sprintf("p%d%s", h.Index, name), name)
	for _, a := range addrs {
		h.AddrAdd(t, name, a)
	}
}
