package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
)

// ErrInvalidAttrs is wrapped by every error Attrs.UnmarshalJSON returns.
var ErrInvalidAttrs = errors.New("invalid lease attributes")

// Attrs are the attributes a node publishes with its lease: where peers reach
// it and what its datapath needs from them.
//
// Attrs marshals to exactly the JSON value flannel stores under a subnet key:
//
//	{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:..."}}
//
// An absent PublicIP is written as "0.0.0.0" and an absent PublicIPv6 as null,
// as flannel does; both read back as the zero Addr. Owner is weft's addition,
// written as "WeftOwner" only when set; flannel ignores fields it does not
// know, and a value without it reads back with an empty Owner.
type Attrs struct {
	PublicIP      netip.Addr      // IPv4 address peers send VXLAN traffic to; zero if none
	PublicIPv6    netip.Addr      // IPv6 address peers send VXLAN traffic to; zero if none
	BackendType   string          // "vxlan"
	BackendData   json.RawMessage // backend-specific, e.g. {"VNI":1,"VtepMAC":"..."}; nil if none
	BackendV6Data json.RawMessage // the same for the IPv6 datapath; nil if none
	Owner         string          // stable identity of the node holding the lease; "" for flannel's leases
}

// attrsJSON is the wire form. The address fields are raw so that "0.0.0.0",
// "" and null can be told apart from malformed values.
type attrsJSON struct {
	PublicIP      json.RawMessage
	PublicIPv6    json.RawMessage
	BackendType   string          `json:",omitempty"`
	BackendData   json.RawMessage `json:",omitempty"`
	BackendV6Data json.RawMessage `json:",omitempty"`
	Owner         string          `json:"WeftOwner,omitempty"`
}

var jsonNull = []byte("null")

// MarshalJSON implements json.Marshaler. It fails if an address is of the
// wrong family, the backend data is not valid JSON, or a field is over its
// size limit (a node name longer than MaxOwnerSize, say), which every
// reader would reject.
func (a Attrs) MarshalJSON() ([]byte, error) {
	if err := a.checkFields(); err != nil {
		return nil, err
	}
	w := attrsJSON{
		PublicIP:      []byte(`"0.0.0.0"`),
		PublicIPv6:    jsonNull,
		BackendType:   a.BackendType,
		BackendData:   nonNull(a.BackendData),
		BackendV6Data: nonNull(a.BackendV6Data),
		Owner:         a.Owner,
	}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
	}{{"BackendData", w.BackendData}, {"BackendV6Data", w.BackendV6Data}} {
		if len(d.raw) > 0 && !json.Valid(d.raw) {
			return nil, fmt.Errorf("%w: %s is not valid JSON", ErrInvalidAttrs, d.name)
		}
	}
	if a.PublicIP.IsValid() {
		if !a.PublicIP.Is4() {
			return nil, fmt.Errorf("%w: PublicIP %s is not an IPv4 address", ErrInvalidAttrs, a.PublicIP)
		}
		w.PublicIP = quoteAddr(a.PublicIP)
	}
	if a.PublicIPv6.IsValid() {
		if !isPlain6(a.PublicIPv6) {
			return nil, fmt.Errorf("%w: PublicIPv6 %s is not a plain IPv6 address", ErrInvalidAttrs, a.PublicIPv6)
		}
		w.PublicIPv6 = quoteAddr(a.PublicIPv6)
	}
	return json.Marshal(w)
}

func quoteAddr(a netip.Addr) []byte {
	b := append([]byte{'"'}, a.String()...)
	return append(b, '"')
}

// UnmarshalJSON implements json.Unmarshaler. It accepts what flannel writes
// and rejects an address of the wrong family. Unknown fields are ignored, so
// values written by newer flannel or weft versions still parse. A value
// over MaxValueSize is rejected before it is parsed, and one with a field
// over its limit (see MaxBackendDataSize) before anything of it is kept:
// the error is then a *SizeError, and wraps ErrTooLarge.
func (a *Attrs) UnmarshalJSON(data []byte) error {
	if err := CheckValueSize(len(data)); err != nil {
		return err
	}
	var w attrsJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidAttrs, err)
	}
	if err := (Attrs{BackendType: w.BackendType, Owner: w.Owner, BackendData: nonNull(w.BackendData), BackendV6Data: nonNull(w.BackendV6Data)}).checkFields(); err != nil {
		return err
	}
	v4, err := parseAttrAddr("PublicIP", w.PublicIP, true)
	if err != nil {
		return err
	}
	v6, err := parseAttrAddr("PublicIPv6", w.PublicIPv6, false)
	if err != nil {
		return err
	}
	*a = Attrs{
		PublicIP:      v4,
		PublicIPv6:    v6,
		BackendType:   w.BackendType,
		BackendData:   nonNull(w.BackendData),
		BackendV6Data: nonNull(w.BackendV6Data),
		Owner:         w.Owner,
	}
	return nil
}

// parseAttrAddr decodes an address field. Absent, null, "" and the
// unspecified address all mean "no address".
func parseAttrAddr(field string, raw json.RawMessage, want4 bool) (netip.Addr, error) {
	if len(raw) == 0 || bytes.Equal(raw, jsonNull) {
		return netip.Addr{}, nil
	}
	s, plain := plainJSONString(raw)
	if !plain {
		if err := json.Unmarshal(raw, &s); err != nil {
			return netip.Addr{}, fmt.Errorf("%w: %s must be a string, got %s", ErrInvalidAttrs, field, clip(string(raw), 64))
		}
	}
	if s == "" {
		return netip.Addr{}, nil
	}
	addr, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("%w: %s %s is not an IP address", ErrInvalidAttrs, field, Quote(s, 64))
	case want4 && !addr.Is4():
		return netip.Addr{}, fmt.Errorf("%w: %s %q is not an IPv4 address", ErrInvalidAttrs, field, s)
	case !want4 && !isPlain6(addr):
		return netip.Addr{}, fmt.Errorf("%w: %s %q is not a plain IPv6 address", ErrInvalidAttrs, field, s)
	case addr.IsUnspecified():
		return netip.Addr{}, nil
	}
	return addr, nil
}

// plainJSONString returns the string a JSON string of printable ASCII without
// escapes stands for, and true; for anything else, false, for
// json.Unmarshal to decode. An address is such a string: decoding it here
// spares every lease a watch brings (a writer's thousands of rejected ones
// too) a second pass of encoding/json.
func plainJSONString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(body), true
}

// nonNull maps a JSON null to nil so that "no backend data" has one form.
func nonNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), jsonNull) {
		return nil
	}
	return raw
}

// Validate reports whether a describes a reachable peer: it has a public
// address and a backend type. UnmarshalJSON accepts any well-formed value, so
// that a lease source can decode first and then skip, with a warning naming
// the key, a lease that is well-formed but unusable.
func (a Attrs) Validate() error {
	if !a.PublicIP.IsValid() && !a.PublicIPv6.IsValid() {
		return fmt.Errorf("%w: neither PublicIP nor PublicIPv6 is set", ErrInvalidAttrs)
	}
	if a.BackendType == "" {
		return fmt.Errorf("%w: BackendType is empty", ErrInvalidAttrs)
	}
	return nil
}

// Equal reports whether a and b carry the same information. Backend data is
// compared by meaning: key order, whitespace and escaping do not count.
func (a Attrs) Equal(b Attrs) bool {
	return a.PublicIP == b.PublicIP &&
		a.PublicIPv6 == b.PublicIPv6 &&
		a.BackendType == b.BackendType &&
		a.Owner == b.Owner &&
		jsonEqual(a.BackendData, b.BackendData) &&
		jsonEqual(a.BackendV6Data, b.BackendV6Data)
}

// jsonEqual compares two JSON values by meaning: object key order,
// whitespace and string escaping do not count. Byte comparison would report a
// change whenever a writer reorders keys or escapes differently (encoding/json
// writes "&" as "\u0026"), and every such false change would reach the
// datapath as a Changed event.
func jsonEqual(x, y json.RawMessage) bool {
	if bytes.Equal(x, y) {
		return true
	}
	vx, okx := decodeJSONValue(x)
	vy, oky := decodeJSONValue(y)
	return okx && oky && reflect.DeepEqual(vx, vy)
}

func decodeJSONValue(raw json.RawMessage) (any, bool) {
	if len(raw) == 0 {
		return nil, true
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // compare numbers as written, without float rounding
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}
