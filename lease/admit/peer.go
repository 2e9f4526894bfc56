package admit

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

// A MAC is a VTEP's Ethernet address, comparable and usable as a map key.
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// A Peer is one family's half of a lease, as the datapath would program it.
type Peer struct {
	Key       lease.Key    // the lease it comes from
	IPv6      bool         // the family
	Subnet    netip.Prefix // Key.IPv4 or Key.IPv6
	PublicIP  netip.Addr   // where its VXLAN packets go
	VtepMAC   MAC
	Owner     string // the node that holds the lease; "" for flannel's leases
	Seniority int64  // the lease's
}

// sameNode reports whether p and o are two leases of one node: the same
// owner, VTEP and address, as while a node moves from one subnet to another.
func (p *Peer) sameNode(o *Peer) bool {
	return p.Owner == o.Owner && p.VtepMAC == o.VtepMAC && p.PublicIP == o.PublicIP
}

// backendData is the vxlan backend's part of a lease, flannel's
// {"VNI":1,"VtepMAC":"0e:..."}.
type backendData struct {
	VNI     int
	VtepMAC string
}

// decoded is one family's half of a lease as far as it decodes, with what
// Facts-free decoding found wrong.
type decoded struct {
	peer        Peer
	backendType string
	vni         int
	err         string // why the backend data does not decode; "" if it does
}

// decode takes one family's half of l apart. It reports false if l has no
// subnet of that family.
func decode(l lease.Lease, ipv6 bool) (decoded, bool) {
	subnet, public, raw := l.Key.IPv4, l.Attrs.PublicIP, l.Attrs.BackendData
	field := "BackendData"
	if ipv6 {
		subnet, public, raw = l.Key.IPv6, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data
		field = "BackendV6Data"
	}
	if !subnet.IsValid() {
		return decoded{}, false
	}
	d := decoded{
		peer:        Peer{Key: l.Key, IPv6: ipv6, Subnet: subnet, PublicIP: public, Owner: l.Attrs.Owner, Seniority: l.Seniority},
		backendType: l.Attrs.BackendType,
	}
	var data backendData
	switch err := json.Unmarshal(raw, &data); {
	case len(raw) == 0:
		d.err = field + " is missing"
	case err != nil:
		d.err = fmt.Sprintf("%s %s is not a {\"VNI\":...,\"VtepMAC\":\"...\"} object", field, quoteShort(raw))
	case data.VtepMAC == "":
		d.err = field + " has no VtepMAC"
	default:
		hw, err := net.ParseMAC(data.VtepMAC)
		if err != nil || len(hw) != 6 {
			d.err = fmt.Sprintf("%s VtepMAC %q is not a 6-byte MAC address", field, data.VtepMAC)
		}
		copy(d.peer.VtepMAC[:], hw)
		d.vni = data.VNI
	}
	return d, true
}

// quoteShort quotes raw for a message, cut to a length a log line can bear.
func quoteShort(raw []byte) string {
	const max = 120
	if len(raw) > max {
		return fmt.Sprintf("%q...", raw[:max])
	}
	return fmt.Sprintf("%q", raw)
}

// static applies the rules that depend on the lease and the facts alone,
// returning the first that fails and what to fix, or "".
func (d *decoded) static(f *Facts) (Reason, string) {
	p := &d.peer
	if want := f.backendType(); d.backendType != want {
		return ReasonBackend, fmt.Sprintf("BackendType %q, but this network runs %q; set it to %q", d.backendType, want, want)
	}
	if d.err != "" {
		return ReasonBackend, d.err + "; the node holding the lease must publish its VTEP"
	}
	if d.vni != f.VNI {
		return ReasonBackend, fmt.Sprintf("VNI %d, but this network uses VNI %d; the Backend config of the two nodes differs", d.vni, f.VNI)
	}
	switch {
	case p.VtepMAC == MAC{}:
		return ReasonVtepMAC, "VtepMAC is all zeros; it must be the VTEP device's unicast MAC"
	case p.VtepMAC[0]&1 != 0:
		return ReasonVtepMAC, fmt.Sprintf("VtepMAC %s is a multicast or broadcast address; it must be the VTEP device's unicast MAC", p.VtepMAC)
	}
	if why := badPublicIP(p.PublicIP, p.IPv6, f); why != "" {
		return ReasonPublicIP, why
	}
	network := f.network(p.IPv6)
	switch {
	case !network.Contains(p.Subnet.Addr()) || p.Subnet.Bits() <= network.Bits():
		return ReasonSubnet, fmt.Sprintf("subnet %s is not a subnet of the Network %s; delete the lease", p.Subnet, network)
	}
	if own := ownHalf(f.Own, p.IPv6); own.IsValid() && own.Overlaps(p.Subnet) {
		return ReasonOwnSubnet, fmt.Sprintf("subnet %s overlaps this node's subnet %s; delete the lease", p.Subnet, own)
	}
	for _, c := range f.Connected {
		if c.Overlaps(p.Subnet) {
			return ReasonConnected, fmt.Sprintf("subnet %s overlaps %s, a network this node is connected to; routing it into the overlay would cut that network off", p.Subnet, c)
		}
	}
	for _, c := range f.Protected {
		if c.Overlaps(p.Subnet) {
			return ReasonProtected, fmt.Sprintf("subnet %s overlaps %s, which the node needs to reach its control plane", p.Subnet, c)
		}
	}
	return "", ""
}

func ownHalf(k lease.Key, ipv6 bool) netip.Prefix {
	if ipv6 {
		return k.IPv6
	}
	return k.IPv4
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	reserved4   = netip.MustParsePrefix("240.0.0.0/4")
)

// badPublicIP says what is wrong with a peer's public IP of a family, or "".
func badPublicIP(a netip.Addr, ipv6 bool, f *Facts) string {
	fam, field := "IPv4", "PublicIP"
	if ipv6 {
		fam, field = "IPv6", "PublicIPv6"
	}
	kind := ""
	switch {
	case !a.IsValid():
		return fmt.Sprintf("%s is not set; the lease gives no %s address to send to", field, fam)
	case a.Is6() != ipv6 || a.Is4In6():
		return fmt.Sprintf("%s %s is not an %s address", field, a, fam)
	case a.IsUnspecified():
		kind = "unspecified"
	case a.IsLoopback():
		kind = "a loopback address"
	case a.IsMulticast():
		kind = "a multicast address"
	case a.IsLinkLocalUnicast():
		kind = "a link-local address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		kind = "the broadcast address"
	case a.Is4() && (thisNetwork.Contains(a) || reserved4.Contains(a)):
		kind = "a reserved address"
	}
	if kind == "" {
		for _, l := range f.LocalAddrs {
			if l == a {
				kind = "one of this node's own addresses"
				break
			}
		}
	}
	if kind == "" && a.Is4() {
		for _, c := range f.Connected {
			if c.Addr().Is4() && c.Bits() <= 30 && broadcast4(c) == a {
				kind = "the broadcast address of " + c.String()
				break
			}
		}
	}
	if kind == "" {
		return ""
	}
	return fmt.Sprintf("%s %s is %s; it must be the underlay address of the node holding the lease", field, a, kind)
}

// broadcast4 returns the last address of an IPv4 prefix.
func broadcast4(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
