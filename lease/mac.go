package lease

import (
	"fmt"
	"net"
)

// MAC is an Ethernet address, as a lease's backend data names one (the
// vxlan backend's VtepMAC). Unlike net.HardwareAddr it is comparable and
// usable as a map key, and it marshals as text in flannel's colon form
// ("0e:5a:11:22:33:44"), in JSON as in a status document. The zero MAC is
// no device's address.
//
// It is the one MAC type of the module: lease/admit judges peers' MACs as
// it, and the vxlan datapath programs them as it.
type MAC [6]byte

// ParseMAC parses a MAC in the colon form flannel writes ("0e:5a:11:22:33:44").
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("%q is not a 6-byte MAC address such as 0e:5a:11:22:33:44", s)
	}
	return MAC(hw), nil
}

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsZero reports whether m is the zero MAC.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsUnicast reports whether m is a unicast address: the lowest bit of its
// first byte clear (a multicast or broadcast address has it set).
func (m MAC) IsUnicast() bool { return m[0]&1 == 0 }

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
