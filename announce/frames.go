package announce

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Ethernet types and the link-layer addresses the announcements go to.
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	minFrame      = 60 // an Ethernet frame's minimum, without its FCS
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// allNodesMAC is the Ethernet address of ff02::1 (RFC 2464: 33:33
	// and the group's last 32 bits).
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodes    = netip.MustParseAddr("ff02::1")
)

// frame returns an Ethernet frame from src to dst carrying payload, padded
// to the minimum length.
func frame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, 0, max(minFrame, 14+len(payload)))
	b = append(b, dst...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, etherType)
	b = append(b, payload...)
	for len(b) < minFrame {
		b = append(b, 0)
	}
	return b
}

// gratuitousARP returns an ARP request for ip from ip at mac, broadcast
// (RFC 5227's announcement): a receiver that caches ip takes mac for it.
// Linux takes it even within the entry's lock time, as a gratuitous ARP.
func gratuitousARP(mac net.HardwareAddr, ip netip.Addr) []byte {
	a := ip.As4()
	p := make([]byte, 0, 28)
	p = binary.BigEndian.AppendUint16(p, 1)      // hardware type: Ethernet
	p = binary.BigEndian.AppendUint16(p, 0x0800) // protocol type: IPv4
	p = append(p, 6, 4)                          // address lengths
	p = binary.BigEndian.AppendUint16(p, 1)      // operation: request
	p = append(p, mac...)                        // sender hardware address
	p = append(p, a[:]...)                       // sender protocol address
	p = append(p, 0, 0, 0, 0, 0, 0)              // target hardware address: unknown
	p = append(p, a[:]...)                       // target protocol address: the same
	return frame(broadcastMAC, mac, etherTypeARP, p)
}

// unsolicitedNA returns a neighbour advertisement for ip at mac, from ip
// to all nodes (RFC 4861 7.2.6): the override flag set and the solicited
// flag clear, so that a receiver that caches ip takes mac and marks the
// entry stale, to be confirmed on first use. Hop limit 255, as receivers
// require of neighbour discovery.
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) []byte {
	src, dst := ip.As16(), allNodes.As16()
	// ICMPv6: type, code, checksum, flags, target, and the target
	// link-layer address option.
	icmp := make([]byte, 0, 32)
	icmp = append(icmp, 136, 0, 0, 0)
	icmp = binary.BigEndian.AppendUint32(icmp, 1<<29) // override
	icmp = append(icmp, src[:]...)
	icmp = append(icmp, 2, 1) // option: target link-layer address, 8 bytes
	icmp = append(icmp, mac...)
	binary.BigEndian.PutUint16(icmp[2:], icmpv6Checksum(src, dst, icmp))

	p := make([]byte, 0, 40+len(icmp))
	p = append(p, 0x60, 0, 0, 0) // version 6, no traffic class or flow label
	p = binary.BigEndian.AppendUint16(p, uint16(len(icmp)))
	p = append(p, 58, 255) // next header ICMPv6, hop limit 255
	p = append(p, src[:]...)
	p = append(p, dst[:]...)
	p = append(p, icmp...)
	return frame(allNodesMAC, mac, etherTypeIPv6, p)
}

// icmpv6Checksum is the ones' complement sum over the IPv6 pseudo-header
// (source, destination, length, next header) and msg, whose checksum
// field is zero.
func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[:4], uint32(len(msg)))
	tail[7] = 58
	add(tail[:])
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
