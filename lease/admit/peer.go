package admit

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"

	"github.com/weftnet/weft/internal/leasekey"
	"github.com/weftnet/weft/lease"
)

// MAC is lease.MAC, the module's one MAC type: a VTEP's Ethernet address,
// comparable, usable as a map key, and marshalled as text. The alias keeps
// the package's indexes short to write.
type MAC = lease.MAC

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

// maxVNI is the largest VXLAN network identifier: it is 24 bits wide.
const maxVNI = 1<<24 - 1

// backendData is how admission decodes vxlan.BackendData, flannel's
// {"VNI":1,"VtepMAC":"0e:..."}, from an untrusted lease: the MAC as text,
// so that a missing one, a malformed one and the zero MAC each get a rule
// and a message of their own.
type backendData struct {
	VNI     int
	VtepMAC string
}

// decode takes one family's half of l apart, as far as it decodes, into a
// candidate. It reports false if l has no subnet of that family.
func decode(l lease.Lease, ipv6 bool) (*cand, bool) {
	subnet, public, raw := l.Key.IPv4, l.Attrs.PublicIP, l.Attrs.BackendData
	field := "BackendData"
	if ipv6 {
		subnet, public, raw = l.Key.IPv6, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data
		field = "BackendV6Data"
	}
	if !subnet.IsValid() {
		return nil, false
	}
	c := &cand{key: leasekey.Pack(l.Key), public: public, owner: l.Attrs.Owner, seniority: l.Seniority, ipv6: ipv6}
	if l.Invalid != "" {
		c.ext().invalid = l.Invalid
		return c, true
	}
	if l.Attrs.BackendType != lease.DefaultBackendType {
		c.ext().otherBackend, c.x.backendType = true, l.Attrs.BackendType
	}
	var data backendData
	switch err := json.Unmarshal(raw, &data); {
	case len(raw) == 0:
		c.ext().decodeErr = field + " is missing"
	case err != nil:
		c.ext().decodeErr = fmt.Sprintf("%s %s is not a {\"VNI\":...,\"VtepMAC\":\"...\"} object", field, quoteShort(raw))
	case data.VtepMAC == "":
		c.ext().decodeErr = field + " has no VtepMAC"
	default:
		hw, err := net.ParseMAC(data.VtepMAC)
		if err != nil || len(hw) != 6 {
			c.ext().decodeErr = fmt.Sprintf("%s VtepMAC %q is not a 6-byte MAC address", field, data.VtepMAC)
		}
		copy(c.mac[:], hw)
		if data.VNI < 0 || data.VNI > maxVNI {
			c.ext().decodeErr = fmt.Sprintf("%s VNI %d is not a VXLAN network identifier (0 to %d)", field, data.VNI, maxVNI)
		}
		c.vni = int32(data.VNI)
	}
	return c, true
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
func (c *cand) staticRules(f *Facts) (Reason, string) {
	if c.x != nil && c.x.invalid != "" {
		return ReasonValue, c.x.invalid + "; the node holding the lease must write one within flannel's format, or the lease be deleted"
	}
	backendType := lease.DefaultBackendType
	if c.x != nil && c.x.otherBackend {
		backendType = c.x.backendType
	}
	if want := f.backendType(); backendType != want {
		return ReasonBackend, fmt.Sprintf("BackendType %q, but this network runs %q; set it to %q", backendType, want, want)
	}
	if c.x != nil && c.x.decodeErr != "" {
		return ReasonBackend, c.x.decodeErr + "; the node holding the lease must publish its VTEP"
	}
	if int(c.vni) != f.VNI {
		return ReasonBackend, fmt.Sprintf("VNI %d, but this network uses VNI %d; the Backend config of the two nodes differs", c.vni, f.VNI)
	}
	switch {
	case c.mac == MAC{}:
		return ReasonVtepMAC, "VtepMAC is all zeros; it must be the VTEP device's unicast MAC"
	case c.mac[0]&1 != 0:
		return ReasonVtepMAC, fmt.Sprintf("VtepMAC %s is a multicast or broadcast address; it must be the VTEP device's unicast MAC", c.mac)
	}
	if why := badPublicIP(c.public, c.ipv6, f); why != "" {
		return ReasonPublicIP, why
	}
	subnet, network := c.subnet(), f.network(c.ipv6)
	if subnet != subnet.Masked() {
		return ReasonSubnet, fmt.Sprintf("subnet %s has host bits set; the subnet is %s", subnet, subnet.Masked())
	}
	if !network.Contains(subnet.Addr()) || subnet.Bits() <= network.Bits() {
		return ReasonSubnet, fmt.Sprintf("subnet %s is not a subnet of the Network %s; delete the lease", subnet, network)
	}
	if own := ownHalf(f.Own, c.ipv6); own.IsValid() && own.Overlaps(subnet) {
		return ReasonOwnSubnet, fmt.Sprintf("subnet %s overlaps this node's subnet %s; delete the lease", subnet, own)
	}
	for _, p := range f.Connected {
		// A connected network that holds the whole overlay network is one
		// the overlay was carved out of on purpose (10.0.0.0/8 on the
		// underlay, 10.244.0.0/16 for pods): peers are meant to be routed
		// out of it.
		if p.Overlaps(subnet) && !(p.Bits() <= network.Bits() && p.Contains(network.Addr())) {
			return ReasonConnected, fmt.Sprintf("subnet %s overlaps %s, a network this node is connected to; routing it into the overlay would cut that network off", subnet, p)
		}
	}
	for _, p := range f.Protected {
		if p.Overlaps(subnet) {
			return ReasonProtected, fmt.Sprintf("subnet %s overlaps %s, which the node needs to reach its control plane", subnet, p)
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
