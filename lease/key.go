package lease

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrInvalidKey is wrapped by every error ParseKey returns.
var ErrInvalidKey = errors.New("invalid subnet key")

// A Key identifies a lease by the subnets it holds: an IPv4 subnet, an IPv6
// subnet, or both. Key is comparable and usable as a map key. The zero Key
// holds no subnet and is not valid.
//
// Its text form is flannel's etcd key suffix: "10.244.3.0-24" for IPv4,
// "10.244.3.0-24&fd00:1::-64" for dual-stack and "0.0.0.0-0&fd00:1::-64" for
// IPv6 only (flannel writes the empty IPv4 subnet as 0.0.0.0-0).
type Key struct {
	IPv4 netip.Prefix // the IPv4 subnet, or the zero Prefix
	IPv6 netip.Prefix // the IPv6 subnet, or the zero Prefix
}

// IsValid reports whether k holds at least one subnet and every subnet it
// holds is a masked prefix of the right family.
func (k Key) IsValid() bool {
	if !k.IPv4.IsValid() && !k.IPv6.IsValid() {
		return false
	}
	if k.IPv4.IsValid() && (!k.IPv4.Addr().Is4() || k.IPv4.Bits() == 0 || k.IPv4 != k.IPv4.Masked()) {
		return false
	}
	if k.IPv6.IsValid() && (!isPlain6(k.IPv6.Addr()) || k.IPv6.Bits() == 0 || k.IPv6 != k.IPv6.Masked()) {
		return false
	}
	return true
}

// isPlain6 reports whether a is an IPv6 address that is neither an IPv4-mapped
// address nor zoned: the only kind a subnet, VTEP or public address may be.
func isPlain6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() && a.Zone() == "" }

// Overlaps reports whether k and o share an address in either family:
// two leases no two nodes may hold at once.
func (k Key) Overlaps(o Key) bool {
	return k.IPv4.IsValid() && o.IPv4.IsValid() && k.IPv4.Overlaps(o.IPv4) ||
		k.IPv6.IsValid() && o.IPv6.IsValid() && k.IPv6.Overlaps(o.IPv6)
}

// String returns the flannel key form of k, or "invalid Key" if k is not valid.
func (k Key) String() string {
	if !k.IsValid() {
		return "invalid Key"
	}
	return string(k.appendTo(nil))
}

func (k Key) appendTo(b []byte) []byte {
	if k.IPv4.IsValid() {
		b = k.IPv4.Addr().AppendTo(b)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(k.IPv4.Bits()), 10)
	} else {
		b = append(b, "0.0.0.0-0"...)
	}
	if k.IPv6.IsValid() {
		b = append(b, '&')
		b = k.IPv6.Addr().AppendTo(b)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(k.IPv6.Bits()), 10)
	}
	return b
}

// MarshalText implements encoding.TextMarshaler. An invalid Key is an error.
func (k Key) MarshalText() ([]byte, error) {
	if !k.IsValid() {
		return nil, fmt.Errorf("%w: cannot encode %#v", ErrInvalidKey, k)
	}
	return k.appendTo(nil), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseKey's rules.
func (k *Key) UnmarshalText(text []byte) error {
	parsed, err := ParseKey(string(text))
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}

// Compare orders keys by IPv4 subnet, then IPv6 subnet, as netip.Prefix.Compare
// does. Absent subnets sort first.
func (k Key) Compare(o Key) int {
	if c := k.IPv4.Compare(o.IPv4); c != 0 {
		return c
	}
	return k.IPv6.Compare(o.IPv6)
}

// ParseKey parses a subnet key in flannel's form (see Key). It is strict: the
// addresses must be in canonical form, carry no host bits and no zone, the
// lengths must be plain decimal within the family's range, and nothing may
// follow the last length. Every error wraps ErrInvalidKey and quotes the input.
func ParseKey(s string) (Key, error) {
	fail := func(why string) (Key, error) {
		return Key{}, fmt.Errorf("%w %q: %s", ErrInvalidKey, s, why)
	}
	v4part, v6part, dual := strings.Cut(s, "&")

	var k Key
	if v4part != "0.0.0.0-0" || !dual {
		p, err := parseKeyPrefix(v4part, true)
		if err != nil {
			return fail(err.Error())
		}
		k.IPv4 = p
	}
	if dual {
		p, err := parseKeyPrefix(v6part, false)
		if err != nil {
			return fail(err.Error())
		}
		k.IPv6 = p
	}
	return k, nil
}

// parseKeyPrefix parses one "<addr>-<len>" half of a key.
func parseKeyPrefix(s string, want4 bool) (netip.Prefix, error) {
	family, maxBits := "IPv6", 128
	if want4 {
		family, maxBits = "IPv4", 32
	}
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("%s part %q has no \"-<length>\"", family, s)
	}
	addrText, lenText := s[:i], s[i+1:]
	addr, err := netip.ParseAddr(addrText)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s address %q does not parse", family, addrText)
	}
	if want4 && !addr.Is4() || !want4 && !isPlain6(addr) {
		return netip.Prefix{}, fmt.Errorf("%q is not a plain %s address", addrText, family)
	}
	if addr.String() != addrText {
		return netip.Prefix{}, fmt.Errorf("address %q is not in canonical form %q", addrText, addr)
	}
	bits, ok := parseDecimal(lenText, maxBits)
	if !ok || bits == 0 {
		return netip.Prefix{}, fmt.Errorf("%s prefix length %q is not a number from 1 to %d", family, lenText, maxBits)
	}
	p := netip.PrefixFrom(addr, bits)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set; the subnet is %s", p, p.Masked())
	}
	return p, nil
}

// parseDecimal parses a plain unsigned decimal no larger than max: no sign, no
// leading zeros, no spaces. strconv.Atoi would accept "+24" and "024".
func parseDecimal(s string, max int) (int, bool) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= max
}
