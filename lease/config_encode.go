package lease

import (
	"encoding/json"
	"net/netip"
)

// MarshalJSON writes c as net-conf.json, with every default ParseConfig
// filled in written out: ParseConfig of the result gives c back (but for
// Unknown, which names fields of the document c was parsed from). It is
// how a Config is cached on disk (package localstate) in the format an
// operator reads.
func (c Config) MarshalJSON() ([]byte, error) {
	out := struct {
		EnableIPv4     bool
		EnableIPv6     bool            `json:",omitempty"`
		EnableNFTables bool            `json:",omitempty"`
		Network        *netip.Prefix   `json:",omitempty"`
		SubnetLen      int             `json:",omitempty"`
		SubnetMin      *netip.Addr     `json:",omitempty"`
		SubnetMax      *netip.Addr     `json:",omitempty"`
		IPv6Network    *netip.Prefix   `json:",omitempty"`
		IPv6SubnetLen  int             `json:",omitempty"`
		IPv6SubnetMin  *netip.Addr     `json:",omitempty"`
		IPv6SubnetMax  *netip.Addr     `json:",omitempty"`
		Backend        json.RawMessage `json:",omitempty"`
	}{EnableIPv4: c.EnableIPv4, EnableIPv6: c.EnableIPv6, EnableNFTables: c.EnableNFTables, Backend: c.Backend}
	valid := func(a netip.Addr) *netip.Addr {
		if a.IsValid() {
			return &a
		}
		return nil
	}
	if c.Network.IsValid() {
		out.Network = &c.Network
	}
	if c.IPv6Network.IsValid() {
		out.IPv6Network = &c.IPv6Network
	}
	out.SubnetLen, out.SubnetMin, out.SubnetMax = c.SubnetLen, valid(c.SubnetMin), valid(c.SubnetMax)
	out.IPv6SubnetLen, out.IPv6SubnetMin, out.IPv6SubnetMax = c.IPv6SubnetLen, valid(c.IPv6SubnetMin), valid(c.IPv6SubnetMax)
	return json.Marshal(out)
}
