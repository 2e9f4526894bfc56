package lease

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// DefaultBackendType is the backend used when net-conf.json names none.
const DefaultBackendType = "vxlan"

// ErrInvalidConfig is matched by every error ParseConfig returns.
var ErrInvalidConfig = errors.New("invalid network config")

// Config is a parsed net-conf.json: the network every node's subnet is cut
// from, and the backend settings the datapath reads. Field names and defaults
// are flannel's. ParseConfig fills in every default, so a Config it returns is
// complete: each enabled family has its Network, SubnetLen, SubnetMin and
// SubnetMax set.
type Config struct {
	// EnableIPv4 turns on the IPv4 network. Default true.
	EnableIPv4 bool
	// EnableIPv6 turns on the IPv6 network. Default false.
	EnableIPv6 bool

	// Network is the IPv4 network, required when EnableIPv4 is set.
	Network netip.Prefix
	// SubnetLen is the prefix length of each node's subnet. Default 24 when
	// Network is /22 or shorter, else Network's length + 2. At most 30, and at
	// least Network's length + 2 so that the network holds four subnets.
	SubnetLen int
	// SubnetMin is the lowest subnet handed out. Default: the second subnet of
	// Network, so that no node gets the subnet holding the network address.
	SubnetMin netip.Addr
	// SubnetMax is the highest subnet handed out. Default: the last subnet of
	// Network.
	SubnetMax netip.Addr

	// IPv6Network, IPv6SubnetLen, IPv6SubnetMin and IPv6SubnetMax are the IPv6
	// counterparts. IPv6SubnetLen defaults to 64 when IPv6Network is /62 or
	// shorter, else its length + 2, and is at most 126.
	IPv6Network   netip.Prefix
	IPv6SubnetLen int
	IPv6SubnetMin netip.Addr
	IPv6SubnetMax netip.Addr

	// EnableNFTables asks for nftables rather than iptables masquerading.
	EnableNFTables bool

	// BackendType is Backend's "Type", DefaultBackendType when absent.
	BackendType string
	// Backend is the raw "Backend" object, nil when absent, for the datapath
	// to parse with its own rules.
	Backend json.RawMessage

	// Unknown lists top-level fields ParseConfig did not recognise, as
	// written. flannel ignores such fields and so does weft, but a caller
	// should log them: a misspelt "SubnetLength" would otherwise go unnoticed.
	Unknown []string
}

// IPv4Range returns the range IPv4 subnets are allocated from, or the zero
// Range when IPv4 is disabled.
func (c Config) IPv4Range() Range {
	if !c.EnableIPv4 {
		return Range{}
	}
	return Range{First: netip.PrefixFrom(c.SubnetMin, c.SubnetLen), Last: netip.PrefixFrom(c.SubnetMax, c.SubnetLen)}
}

// IPv6Range returns the range IPv6 subnets are allocated from, or the zero
// Range when IPv6 is disabled.
func (c Config) IPv6Range() Range {
	if !c.EnableIPv6 {
		return Range{}
	}
	return Range{First: netip.PrefixFrom(c.IPv6SubnetMin, c.IPv6SubnetLen), Last: netip.PrefixFrom(c.IPv6SubnetMax, c.IPv6SubnetLen)}
}

// A ConfigError describes one invalid field of net-conf.json. Its message
// names the field and the offending value and, where one is obvious, the fix:
//
//	net-conf.json: SubnetMin 10.5.3.7 is not aligned to /24; use 10.5.3.0
type ConfigError struct {
	Field  string // the field, e.g. "SubnetMin" or "Backend.Type"; "" for the document as a whole
	Value  string // the offending value as written; may be ""
	Reason string // what is wrong, and how to fix it
	Err    error  // the underlying error, if any
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("net-conf.json: ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteByte(' ')
	}
	if e.Value != "" {
		b.WriteString(e.Value)
		b.WriteByte(' ')
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap lets errors.Is match ErrInvalidConfig and the underlying error.
func (e *ConfigError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidConfig}
	}
	return []error{ErrInvalidConfig, e.Err}
}

// ParseConfig parses net-conf.json, applies flannel's defaults and validates
// the result. Field names match case-insensitively, as with encoding/json; a
// field given twice is an error, and unknown fields are listed in
// Config.Unknown. Errors are *ConfigError and match ErrInvalidConfig.
//
// Unlike flannel, weft rejects a Network with host bits set (10.244.0.1/16)
// rather than silently masking it.
func ParseConfig(data []byte) (Config, error) {
	c := Config{EnableIPv4: true, BackendType: DefaultBackendType}
	fields, err := decodeObject(data)
	if err != nil {
		return Config{}, err
	}
	seen := make(map[string]string, len(fields))
	for _, f := range fields {
		spec := lookupField(f.name)
		if spec == nil {
			c.Unknown = append(c.Unknown, f.name)
			continue
		}
		if first, dup := seen[spec.name]; dup {
			return Config{}, &ConfigError{Field: spec.name, Reason: fmt.Sprintf("is given twice (as %q and %q); keep one", first, f.name)}
		}
		seen[spec.name] = f.name
		if bytes.Equal(f.value, jsonNull) {
			continue // null means absent, as with encoding/json
		}
		if err := spec.decode(&c, f.value); err != nil {
			return Config{}, err
		}
	}
	if err := c.complete(); err != nil {
		return Config{}, err
	}
	return c, nil
}

type rawField struct {
	name  string
	value json.RawMessage
}

// decodeObject splits a JSON object into its fields, in order, keeping
// duplicates so that the caller can reject them.
func decodeObject(data []byte) ([]rawField, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ConfigError{Reason: "is empty; it must hold a JSON object such as {\"Network\": \"10.244.0.0/16\"}"}
	}
	syntax := func(err error) error {
		if err == io.EOF { // the decoder ran out of input inside the object
			err = io.ErrUnexpectedEOF
		}
		return &ConfigError{Reason: "is not valid JSON: " + err.Error(), Err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &ConfigError{Reason: "must be a JSON object such as {\"Network\": \"10.244.0.0/16\"}"}
	}
	var fields []rawField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		name, _ := tok.(string) // inside an object the decoder only yields string keys
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, syntax(err)
		}
		fields = append(fields, rawField{name, value})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &ConfigError{Reason: "has data after the closing brace of the JSON object"}
	}
	return fields, nil
}

type fieldSpec struct {
	name   string
	decode func(c *Config, raw json.RawMessage) error
}

var configFields = []fieldSpec{
	{"EnableIPv4", boolField("EnableIPv4", func(c *Config) *bool { return &c.EnableIPv4 })},
	{"EnableIPv6", boolField("EnableIPv6", func(c *Config) *bool { return &c.EnableIPv6 })},
	{"EnableNFTables", boolField("EnableNFTables", func(c *Config) *bool { return &c.EnableNFTables })},
	{"Network", prefixField(ipv4Family, func(c *Config) *netip.Prefix { return &c.Network })},
	{"IPv6Network", prefixField(ipv6Family, func(c *Config) *netip.Prefix { return &c.IPv6Network })},
	{"SubnetLen", lenField(ipv4Family, func(c *Config) *int { return &c.SubnetLen })},
	{"IPv6SubnetLen", lenField(ipv6Family, func(c *Config) *int { return &c.IPv6SubnetLen })},
	{"SubnetMin", addrField(ipv4Family, "SubnetMin", func(c *Config) *netip.Addr { return &c.SubnetMin })},
	{"SubnetMax", addrField(ipv4Family, "SubnetMax", func(c *Config) *netip.Addr { return &c.SubnetMax })},
	{"IPv6SubnetMin", addrField(ipv6Family, "IPv6SubnetMin", func(c *Config) *netip.Addr { return &c.IPv6SubnetMin })},
	{"IPv6SubnetMax", addrField(ipv6Family, "IPv6SubnetMax", func(c *Config) *netip.Addr { return &c.IPv6SubnetMax })},
	{"Backend", decodeBackend},
}

func lookupField(name string) *fieldSpec {
	for i := range configFields {
		if strings.EqualFold(configFields[i].name, name) {
			return &configFields[i]
		}
	}
	return nil
}

func boolField(name string, field func(*Config) *bool) func(*Config, json.RawMessage) error {
	return func(c *Config, raw json.RawMessage) error {
		if err := json.Unmarshal(raw, field(c)); err != nil {
			return &ConfigError{Field: name, Value: abbreviate(raw), Reason: "must be true or false"}
		}
		return nil
	}
}

func decodeString(name string, raw json.RawMessage, example string) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &ConfigError{Field: name, Value: abbreviate(raw), Reason: fmt.Sprintf("must be a string such as %q", example)}
	}
	return s, nil
}

func prefixField(fam *family, field func(*Config) *netip.Prefix) func(*Config, json.RawMessage) error {
	return func(c *Config, raw json.RawMessage) error {
		s, err := decodeString(fam.netName, raw, fam.exampleNet)
		if err != nil {
			return err
		}
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			return &ConfigError{Field: fam.netName, Value: fmt.Sprintf("%q", s), Reason: fmt.Sprintf("is not a CIDR such as %q", fam.exampleNet), Err: err}
		case !fam.owns(p.Addr()):
			return &ConfigError{Field: fam.netName, Value: s, Reason: fam.wrongFamily}
		case p != p.Masked():
			return &ConfigError{Field: fam.netName, Value: s, Reason: fmt.Sprintf("has host bits set; use %s", p.Masked())}
		}
		*field(c) = p
		return nil
	}
}

func addrField(fam *family, name string, field func(*Config) *netip.Addr) func(*Config, json.RawMessage) error {
	return func(c *Config, raw json.RawMessage) error {
		s, err := decodeString(name, raw, fam.exampleAddr)
		if err != nil {
			return err
		}
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			return &ConfigError{Field: name, Value: fmt.Sprintf("%q", s), Reason: fmt.Sprintf("is not an IP address such as %q", fam.exampleAddr), Err: err}
		case !fam.owns(a):
			return &ConfigError{Field: name, Value: s, Reason: "is not " + fam.article}
		case a.IsUnspecified():
			return nil // flannel reads 0.0.0.0 (and ::) as "use the default"
		}
		*field(c) = a
		return nil
	}
}

func lenField(fam *family, field func(*Config) *int) func(*Config, json.RawMessage) error {
	return func(c *Config, raw json.RawMessage) error {
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 || n > fam.bits {
			return &ConfigError{Field: fam.lenName, Value: abbreviate(raw), Reason: fmt.Sprintf("must be a whole number from 0 (the default) to %d", fam.maxLen)}

		}
		*field(c) = n
		return nil
	}
}

func decodeBackend(c *Config, raw json.RawMessage) error {
	var b struct{ Type json.RawMessage }
	if err := json.Unmarshal(raw, &b); err != nil || raw[0] != '{' {
		return &ConfigError{Field: "Backend", Value: abbreviate(raw), Reason: `must be a JSON object such as {"Type": "vxlan"}`}
	}
	c.Backend = raw
	if len(b.Type) == 0 || bytes.Equal(b.Type, jsonNull) {
		return nil
	}
	t, err := decodeString("Backend.Type", b.Type, DefaultBackendType)
	if err != nil {
		return err
	}
	if t != "" {
		c.BackendType = t
	}
	return nil
}

// abbreviate shortens a raw value for an error message.
func abbreviate(raw json.RawMessage) string {
	const max = 40
	if len(raw) <= max {
		return string(raw)
	}
	return string(raw[:max]) + "..."
}

// family holds what differs between the IPv4 and IPv6 halves of a Config,
// so that one set of rules validates both.
type family struct {
	enableName, netName, lenName, minName, maxName string

	bits       int // address bits
	maxLen     int // longest subnet: room for a network, gateway and pod address
	defaultLen int // SubnetLen for networks of length defaultLen-2 or shorter
	is4        bool

	exampleNet, exampleAddr, article, wrongFamily string
	defaultNote, disableHint                      string // for "Network is required"
}

var ipv4Family = &family{
	enableName: "EnableIPv4", netName: "Network", lenName: "SubnetLen", minName: "SubnetMin", maxName: "SubnetMax",
	bits: 32, maxLen: 30, defaultLen: 24, is4: true,
	exampleNet: "10.244.0.0/16", exampleAddr: "10.244.1.0", article: "an IPv4 address",
	wrongFamily: "is not an IPv4 network; put IPv6 networks in IPv6Network",
	defaultNote: " (the default)", disableHint: `, or set "EnableIPv4": false for an IPv6-only network`,
}

var ipv6Family = &family{
	enableName: "EnableIPv6", netName: "IPv6Network", lenName: "IPv6SubnetLen", minName: "IPv6SubnetMin", maxName: "IPv6SubnetMax",
	bits: 128, maxLen: 126, defaultLen: 64,
	exampleNet: "fd00:10:244::/56", exampleAddr: "fd00:10:244:1::", article: "a plain IPv6 address",
	wrongFamily: "is not an IPv6 network; put IPv4 networks in Network",
}

func (f *family) owns(a netip.Addr) bool {
	if f.is4 {
		return a.Is4()
	}
	return isPlain6(a)
}

// familyView points at one family's fields of a Config.
type familyView struct {
	*family
	enabled   bool
	network   *netip.Prefix
	subnetLen *int
	min, max  *netip.Addr
}

func (c *Config) families() [2]familyView {
	return [2]familyView{
		{ipv4Family, c.EnableIPv4, &c.Network, &c.SubnetLen, &c.SubnetMin, &c.SubnetMax},
		{ipv6Family, c.EnableIPv6, &c.IPv6Network, &c.IPv6SubnetLen, &c.IPv6SubnetMin, &c.IPv6SubnetMax},
	}
}

// complete applies defaults and checks the cross-field rules.
func (c *Config) complete() error {
	if !c.EnableIPv4 && !c.EnableIPv6 {
		return &ConfigError{Field: "EnableIPv4", Value: "false", Reason: "and EnableIPv6 false leave no network to run; set one of them to true"}
	}
	for _, f := range c.families() {
		if f.enabled {
			if err := f.complete(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f familyView) complete() error {
	network := *f.network
	if !network.IsValid() {
		return &ConfigError{Field: f.netName, Reason: fmt.Sprintf("is required when %s is true%s; set it to the pod network, e.g. %q%s", f.enableName, f.defaultNote, f.exampleNet, f.disableHint)}
	}
	switch n := *f.subnetLen; {
	case network.Bits() > f.maxLen-2:
		return &ConfigError{Field: f.netName, Value: network.String(), Reason: fmt.Sprintf("is too small; it must be /%d or larger to hold four /%d subnets", f.maxLen-2, f.maxLen)}
	case n == 0 && network.Bits() <= f.defaultLen-2:
		*f.subnetLen = f.defaultLen
	case n == 0:
		*f.subnetLen = network.Bits() + 2
	case n > f.maxLen:
		return &ConfigError{Field: f.lenName, Value: fmt.Sprint(n), Reason: fmt.Sprintf("is too long; at most %d, so that a subnet holds a gateway and pods", f.maxLen)}
	case n < network.Bits()+2:
		return &ConfigError{Field: f.lenName, Value: fmt.Sprint(n), Reason: fmt.Sprintf("is too short for %s %s; use at least %d so that the network holds four subnets", f.netName, network, network.Bits()+2)}
	}
	subnetLen := *f.subnetLen
	hostBits := uint(f.bits - subnetLen)
	netLo := u128FromAddr(network.Addr())
	netHi := netLo.or(ones(uint(f.bits - network.Bits())))
	if !f.min.IsValid() {
		*f.min = netLo.add(u128From64(1).shl(hostBits)).addr(f.is4)
	}
	if !f.max.IsValid() {
		*f.max = netHi.andNot(ones(hostBits)).addr(f.is4)
	}
	for _, b := range []struct {
		name string
		addr netip.Addr
	}{{f.minName, *f.min}, {f.maxName, *f.max}} {
		if !network.Contains(b.addr) {
			return &ConfigError{Field: b.name, Value: b.addr.String(), Reason: fmt.Sprintf("is outside %s %s", f.netName, network)}
		}
		if aligned := netip.PrefixFrom(b.addr, subnetLen).Masked().Addr(); aligned != b.addr {
			return &ConfigError{Field: b.name, Value: b.addr.String(), Reason: fmt.Sprintf("is not aligned to /%d; use %s", subnetLen, aligned)}
		}
	}
	if f.min.Compare(*f.max) > 0 {
		return &ConfigError{Field: f.minName, Value: f.min.String(), Reason: fmt.Sprintf("is above %s %s; no subnet lies between them", f.maxName, *f.max)}
	}
	return nil
}
