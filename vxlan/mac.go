package vxlan

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/weftnet/weft/lease"
)

// DeriveMAC returns the VTEP MAC for a node and VNI: the same on every
// restart and reboot, with no state and no control plane to ask, and
// different for different nodes with overwhelming probability. It is a
// locally administered unicast address (the second-lowest bit of the first
// byte set, the lowest clear), so it cannot collide with a vendor-assigned
// address. The vxlan Factory seeds the IPv6 device with node+" ipv6", so
// that the two devices of a dual-stack node differ.
func DeriveMAC(node string, vni int) lease.MAC {
	h := sha256.New()
	h.Write([]byte("weft vtep mac\x00"))
	h.Write([]byte(node))
	h.Write(binary.BigEndian.AppendUint32([]byte{0}, uint32(vni)))
	var m lease.MAC
	copy(m[:], h.Sum(nil))
	m[0] = m[0]&^0x01 | 0x02
	return m
}
