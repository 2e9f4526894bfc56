//go:build linux

package wireguard

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/lease"
)

// Reasons a peer is not programmed, in PeerStatus.Reason.
const (
	// ReasonLease: the lease gives nothing to program: another backend,
	// no or malformed backend data, this node's own key, no public
	// address of the family, a subnet outside the Network or on this
	// node's.
	ReasonLease = "lease"
	// ReasonKeyConflict: an older peer has the same public key. WireGuard
	// knows a peer by its key alone, so a second lease with it would take
	// the first one's AllowedIPs and endpoint.
	ReasonKeyConflict = "key-conflict"
	// ReasonSubnetConflict: the subnet overlaps an older peer's.
	ReasonSubnetConflict = "subnet-conflict"
	// ReasonDevice: the device refused the peer.
	ReasonDevice = "device"
)

// peerWant is one peer as the device should have it.
type peerWant struct {
	key       Key
	endpoint  netip.AddrPort
	allowed   []netip.Prefix // sorted
	keepalive time.Duration
	psk       Key
}

func (w peerWant) equal(o peerWant) bool {
	return w.key == o.key && w.endpoint == o.endpoint && w.keepalive == o.keepalive && w.psk == o.psk && slices.Equal(w.allowed, o.allowed)
}

// config is w as wgctrl's peer configuration, replacing what the device
// has for the key.
func (w peerWant) config() wgtypes.PeerConfig {
	psk := wgtypes.Key(w.psk)
	ka := w.keepalive
	c := wgtypes.PeerConfig{
		PublicKey:                   wgtypes.Key(w.key),
		PresharedKey:                &psk,
		Endpoint:                    net.UDPAddrFromAddrPort(w.endpoint),
		PersistentKeepaliveInterval: &ka,
		ReplaceAllowedIPs:           true,
	}
	for _, p := range w.allowed {
		c.AllowedIPs = append(c.AllowedIPs, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return c
}

// have is what the device has for a peer, in the same terms.
func have(p wgtypes.Peer) peerWant {
	w := peerWant{key: Key(p.PublicKey), keepalive: p.PersistentKeepaliveInterval, psk: Key(p.PresharedKey)}
	if p.Endpoint != nil {
		ap := p.Endpoint.AddrPort()
		w.endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	for _, n := range p.AllowedIPs {
		a, _ := netip.AddrFromSlice(n.IP)
		ones, _ := n.Mask.Size()
		w.allowed = append(w.allowed, netip.PrefixFrom(a.Unmap(), ones))
	}
	slices.SortFunc(w.allowed, netip.Prefix.Compare)
	return w
}

// planPeers works out one device's peers from the admitted leases, oldest
// first, and the status of each lease's part on it but for the device's
// verdict. It applies, on its own, the rules a hostile lease could break
// (a key that is this node's or an older peer's, a subnet outside the
// Network or overlapping this node's or an older peer's), so that the
// datapath is safe even given leases no admission saw.
func (d *Datapath) planPeers(spec DeviceSpec, cfg DatapathConfig, peers []lease.Lease) (map[Key]peerWant, []PeerStatus) {
	sorted := slices.Clone(peers)
	slices.SortStableFunc(sorted, func(a, b lease.Lease) int { return lease.CompareSeniority(a.Seniority, a.Key, b.Seniority, b.Key) })
	want := map[Key]peerWant{}
	owner := map[Key]lease.Key{}
	taken := [2]*prefixSet{newPrefixSet(cfg.Network), newPrefixSet(cfg.IPv6Network)}
	var status []PeerStatus
	cache := &parseCache{old: d.parsed, now: make(map[string]parsed, len(d.parsed))}
	defer func() { d.parsed = cache.now }()
	for _, l := range sorted {
		s := PeerStatus{Key: l.Key, Device: spec.Name}
		var subnets []netip.Prefix
		fail := func(reason, format string, args ...any) {
			s.Reason, s.Err = reason, fmt.Sprintf(format, args...)
		}
		var endpointV6 bool
		switch cfg.Config.Mode {
		case ModeIPv6:
			endpointV6 = true
		case ModeAuto:
			endpointV6 = autoV6(cfg.Lease.Attrs, l.Attrs)
		case ModeSeparate, "":
			endpointV6 = spec.IPv6
		}
		var datas [2]*BackendData
		for _, v6 := range []bool{false, true} {
			subnet, network, carried := l.Key.IPv4, cfg.Network, spec.IPv4
			own := cfg.Lease.Key.IPv4
			if v6 {
				subnet, network, carried, own = l.Key.IPv6, cfg.IPv6Network, spec.IPv6, cfg.Lease.Key.IPv6
			}
			if !carried || !subnet.IsValid() || s.Reason != "" {
				continue
			}
			fd, err := admit(l, v6, d.pub, cache.parse)
			if err != nil {
				fail(ReasonLease, "%v", err)
				continue
			}
			datas[b2i(v6)] = &fd
			switch {
			case subnet != subnet.Masked():
				fail(ReasonLease, "subnet %s has host bits set", subnet)
			case !network.Contains(subnet.Addr()) || subnet.Bits() <= network.Bits():
				fail(ReasonLease, "subnet %s is not inside the Network %s", subnet, network)
			case own.IsValid() && own.Overlaps(subnet):
				fail(ReasonLease, "subnet %s overlaps this node's subnet %s", subnet, own)
			case taken[b2i(v6)].overlaps(subnet):
				fail(ReasonSubnetConflict, "subnet %s overlaps an older peer's", subnet)
			}
			subnets = append(subnets, subnet)
		}
		// The endpoint family's data, else the other's; one device knows
		// a peer by one key, so two must agree.
		data := datas[b2i(endpointV6)]
		if other := datas[1-b2i(endpointV6)]; data == nil {
			data = other
		} else if other != nil && other.PublicKey != data.PublicKey && s.Reason == "" {
			fail(ReasonLease, "BackendData and BackendV6Data name different keys (%s, %s); one device knows a peer by one key", datas[0].PublicKey, datas[1].PublicKey)
		}
		if data == nil {
			data = &BackendData{}
		}
		if len(subnets) == 0 && s.Reason == "" {
			continue // nothing of this lease on this device
		}
		s.PublicKey = data.PublicKey
		public := l.Attrs.PublicIP
		port := data.Port
		if endpointV6 {
			public = l.Attrs.PublicIPv6
		}
		if port == 0 {
			port = spec.Port // a sender without Port: the receiver's own
		}
		if s.Reason == "" {
			if !public.IsValid() {
				fail(ReasonLease, "no public address of the family its endpoint needs (mode %s)", cfg.Config.Mode)
			} else if o, dup := owner[data.PublicKey]; dup {
				fail(ReasonKeyConflict, "PublicKey %s is also the older peer %s's; a node must have a key of its own", data.PublicKey, o)
			}
		}
		s.Endpoint = netip.AddrPortFrom(public, uint16(port))
		s.AllowedIPs = subnets
		if s.Reason == "" {
			owner[data.PublicKey] = l.Key
			for _, p := range subnets {
				taken[b2i(p.Addr().Is6())].add(p)
			}
			w := peerWant{key: data.PublicKey, endpoint: s.Endpoint, allowed: slices.Clone(subnets), keepalive: cfg.Config.PersistentKeepaliveInterval, psk: cfg.Config.PSK}
			slices.SortFunc(w.allowed, netip.Prefix.Compare)
			want[data.PublicKey] = w
		}
		status = append(status, s)
	}
	return want, status
}

// parseCache keeps what the last planPeers parsed, by the raw value, for
// the next: checking a key costs a scalar multiplication, which for
// thousands of peers at every reconcile would cost seconds. It keeps only
// what the current pass used.
type parseCache struct {
	old, now map[string]parsed
}

type parsed struct {
	d   BackendData
	err error
}

func (c *parseCache) parse(raw json.RawMessage) (BackendData, error) {
	if p, ok := c.now[string(raw)]; ok {
		return p.d, p.err
	}
	p, ok := c.old[string(raw)]
	if !ok {
		p.d, p.err = ParseBackendData(raw)
	}
	c.now[string(raw)] = p
	return p.d, p.err
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// autoV6 is flannel's auto mode's choice of a peer's endpoint family:
// IPv4 unless the peer has IPv6, its IPv4 address is private or this
// node has none, and both ends' IPv6 addresses are public.
func autoV6(self, peer lease.Attrs) bool {
	switch {
	case !peer.PublicIPv6.IsValid():
		return false
	case !peer.PublicIP.IsPrivate() && self.PublicIP.IsValid():
		return false
	case !peer.PublicIPv6.IsPrivate() && self.PublicIPv6.IsValid() && !self.PublicIPv6.IsPrivate():
		return true
	}
	return false
}

// prefixSet finds overlaps among subnets of one network: it holds each
// subnet added and every prefix between the network and it, so that an
// overlap, either way, is a few lookups.
type prefixSet struct {
	network         netip.Prefix
	subnets, covers map[netip.Prefix]bool
}

func newPrefixSet(network netip.Prefix) *prefixSet {
	return &prefixSet{network: network, subnets: map[netip.Prefix]bool{}, covers: map[netip.Prefix]bool{}}
}

// overlaps reports whether p, inside the network, overlaps a subnet added.
func (s *prefixSet) overlaps(p netip.Prefix) bool {
	if s.covers[p] {
		return true // an added subnet is inside p
	}
	for b := s.network.Bits(); b <= p.Bits(); b++ {
		if s.subnets[netip.PrefixFrom(p.Addr(), b).Masked()] {
			return true
		}
	}
	return false
}

func (s *prefixSet) add(p netip.Prefix) {
	s.subnets[p] = true
	for b := s.network.Bits(); b <= p.Bits(); b++ {
		s.covers[netip.PrefixFrom(p.Addr(), b).Masked()] = true
	}
}
