package vxlan

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
)

// MAC is an Ethernet address. Unlike net.HardwareAddr it is comparable and
// usable as a map key. The zero MAC is not a valid VTEP address.
type MAC [6]byte

// ParseMAC parses a MAC in the colon form flannel writes ("0e:5a:11:22:33:44").
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("vxlan: %q is not a 6-byte MAC address such as 0e:5a:11:22:33:44", s)
	}
	return MAC(hw), nil
}

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsZero reports whether m is the zero MAC.
func (m MAC) IsZero() bool { return m == MAC{} }

// HardwareAddr returns m as a net.HardwareAddr.
func (m MAC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(m[:]) }

// MarshalText implements encoding.TextMarshaler, as flannel's VtepMAC.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	p, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = p
	return nil
}

// DeriveMAC returns the VTEP MAC for a node and VNI: the same on every
// restart and reboot, with no state and no control plane to ask, and
// different for different nodes with overwhelming probability. It is a
// locally administered unicast address (the second-lowest bit of the first
// byte set, the lowest clear), so it cannot collide with a vendor-assigned
// address. A Network seeds its IPv6 device with node+" ipv6", so that the
// two devices of a dual-stack node differ.
func DeriveMAC(node string, vni int) MAC {
	h := sha256.New()
	h.Write([]byte("weft vtep mac\x00"))
	h.Write([]byte(node))
	h.Write(binary.BigEndian.AppendUint32([]byte{0}, uint32(vni)))
	var m MAC
	copy(m[:], h.Sum(nil))
	m[0] = m[0]&^0x01 | 0x02
	return m
}
