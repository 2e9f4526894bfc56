//go:build linux

package vxlan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/lease"
)

// FactoryConfig configures the vxlan backend's lease.DatapathFactory.
// The zero value is flannel's behaviour.
type FactoryConfig struct {
	// VtepMAC and VtepMACv6 are the MACs of the IPv4 and IPv6 devices.
	// Each device's MAC is, first match wins:
	//
	//  1. this field, when set;
	//  2. the first MAC published for the node for the VNI
	//     (lease.DatapathSetup.Published: the lease source's hints, such as
	//     kube's backend-data annotations; the node's own lease in the
	//     store, such as flannel's random MAC on a node migrating from it;
	//     the local state's);
	//  3. DeriveMAC(node, VNI) for the IPv4 device, DeriveMAC(node+" ipv6",
	//     VNI) for the IPv6 one, which survive restarts and reboots.
	//
	// A device found with another MAC is corrected. Keeping a published
	// MAC means peers' entries stay valid, even on peers cut off from the
	// control plane.
	VtepMAC, VtepMACv6 lease.MAC
	// TXChecksumOffload overrides the network config's
	// Backend.TXChecksumOffload for this node's devices; "" follows it
	// (whose default is auto: off on kernels before 5.7).
	TXChecksumOffload ChecksumOffload

	// host is the kernel to program; nil: the one in the setup's
	// namespace. The scale harness gives each of its agents a recorder.
	host host
}

// NewFactory returns the vxlan backend's datapath factory, which an agent
// takes for backend type "vxlan" (lease.DefaultBackendType). Each
// datapath it makes is a Datapath (see DatapathOf) for one family's
// device, flannel.<VNI> or flannel-v6.<VNI>.
func NewFactory(cfg FactoryConfig) lease.DatapathFactory { return factory{cfg} }

type factory struct{ cfg FactoryConfig }

// Check parses the backend config and checks that the underlay carries
// Backend.MTU plus VXLAN's overhead.
func (f factory) Check(s lease.DatapathSetup) error {
	backend, err := ParseConfig(s.Backend)
	if err != nil {
		return err
	}
	if backend.MTU == 0 {
		return nil
	}
	h, err := hostOr(f.cfg.host, netns.NsHandle(s.Namespace)).handle()
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByIndex(s.Underlay)
	if err != nil {
		return fmt.Errorf("vxlan: underlay interface %d: %w", s.Underlay, err)
	}
	overhead, fam := OverheadIPv4, "IPv4"
	if s.IPv6 {
		overhead, fam = OverheadIPv6, "IPv6"
	}
	if most := link.Attrs().MTU - overhead; backend.MTU > most {
		return fmt.Errorf("net-conf.json: Backend.MTU %d is more than the underlay carries: at most %d (%s's MTU %d less %d of VXLAN over %s); use 0 to derive it",
			backend.MTU, most, link.Attrs().Name, link.Attrs().MTU, overhead, fam)
	}
	return nil
}

// New creates the family's device, with the MAC FactoryConfig.VtepMAC
// says.
func (f factory) New(s lease.DatapathSetup) (lease.Datapath, error) {
	backend, err := ParseConfig(s.Backend)
	if err != nil {
		return nil, err
	}
	if !s.Local.IsValid() {
		return nil, errors.New("vxlan: no local address to send from")
	}
	log := cmp.Or(s.Logger, slog.Default())
	seed := s.Node
	if s.IPv6 {
		seed += " ipv6" // a different MAC on each device, as flannel's
	}
	mac := DeriveMAC(seed, backend.VNI)
	switch set := f.cfg.VtepMAC; {
	case s.IPv6 && !f.cfg.VtepMACv6.IsZero():
		mac = f.cfg.VtepMACv6
	case !s.IPv6 && !set.IsZero():
		mac = set
	default:
		if published, ok := publishedMAC(s, backend.VNI); ok {
			if published != mac {
				log.Info("keeping the VTEP MAC published for this node, so that peers' entries stay valid", "mac", published, "derived", mac, "ipv6", s.IPv6)
			}
			mac = published
		}
	}
	dp, err := NewDatapath(DatapathConfig{
		Namespace: netns.NsHandle(s.Namespace),
		Device: DeviceConfig{
			VNI: backend.VNI, Port: backend.Port, GBP: backend.GBP, Learning: backend.Learning,
			Local: s.Local, Underlay: s.Underlay, MAC: mac, MTU: backend.MTU,
			TXChecksumOffload: cmp.Or(f.cfg.TXChecksumOffload, backend.TXChecksumOffload),
		},
		ResyncInterval: s.ResyncInterval,
		Logger:         s.Logger,
		OnReconcile:    s.OnChange,
		host:           f.cfg.host,
	})
	if err != nil {
		return nil, err
	}
	data, _ := json.Marshal(BackendData{VNI: backend.VNI, VtepMAC: mac})
	fam := &famDatapath{dp: dp, data: data, direct: backend.DirectRouting}
	fam.onLink.Store(&s.OnLink)
	return fam, nil
}

// publishedMAC returns the first MAC published for the node for vni that
// is a unicast address: one for another VNI, or a multicast one, is not
// kept.
func publishedMAC(s lease.DatapathSetup, vni int) (lease.MAC, bool) {
	if s.Published == nil {
		return lease.MAC{}, false
	}
	for _, raw := range s.Published() {
		var bd BackendData
		if len(raw) == 0 || json.Unmarshal(raw, &bd) != nil || bd.VNI != vni || bd.VtepMAC.IsZero() || !bd.VtepMAC.IsUnicast() {
			continue
		}
		return bd.VtepMAC, true
	}
	return lease.MAC{}, false
}

// famDatapath is a Datapath as the agent drives it (lease.Datapath): admitted
// peers in, with DirectRouting decided against the underlay's prefix.
type famDatapath struct {
	dp     *Datapath
	data   json.RawMessage
	direct bool // Backend.DirectRouting
	onLink atomic.Pointer[netip.Prefix]
}

// DatapathOf returns the vxlan Datapath behind d, a datapath NewFactory
// made, for its detailed status (Status, Peers, Counts); nil for any
// other. The agent that runs it owns it: read it, never Close it or set
// its peers.
func DatapathOf(d any) *Datapath {
	if f, ok := d.(*famDatapath); ok {
		return f.dp
	}
	return nil
}

// DatapathsOf is DatapathOf of each of an agent's two datapaths (IPv4,
// IPv6), as agent.Network.Datapaths returns them.
func DatapathsOf(v4, v6 any) (*Datapath, *Datapath) { return DatapathOf(v4), DatapathOf(v6) }

func (f *famDatapath) BackendData() json.RawMessage  { return f.data }
func (f *famDatapath) SetSubnet(subnet netip.Prefix) { f.dp.SetSubnet(subnet) }
func (f *famDatapath) Close()                        { f.dp.Close() }

func (f *famDatapath) SetUnderlay(local netip.Addr, underlay int, onLink netip.Prefix) {
	f.onLink.Store(&onLink)
	f.dp.SetUnderlay(local, underlay)
}

// peer turns an admitted peer into the datapath's: with DirectRouting, a
// peer on the underlay's network is routed to directly.
func (f *famDatapath) peer(p lease.DatapathPeer) Peer {
	out := Peer{Subnet: p.Subnet, PublicIP: p.PublicIP, VtepMAC: p.MAC}
	if f.direct {
		if onLink := f.onLink.Load(); onLink.IsValid() && onLink.Contains(p.PublicIP) {
			out.Direct = true
		}
	}
	return out
}

func (f *famDatapath) SetPeers(peers []lease.DatapathPeer) error {
	out := make([]Peer, len(peers))
	for i, p := range peers {
		out[i] = f.peer(p)
	}
	return f.dp.SetPeers(out)
}

func (f *famDatapath) SetPeer(p lease.DatapathPeer) error   { return f.dp.SetPeer(f.peer(p)) }
func (f *famDatapath) RemovePeer(subnet netip.Prefix) error { return f.dp.RemovePeer(subnet) }
func (f *famDatapath) Run(ctx context.Context) error        { return f.dp.Run(ctx) }

func (f *famDatapath) Report() lease.DatapathReport {
	v := f.dp.loadView()
	r := lease.DatapathReport{Synced: v.synced, MTU: v.dev.MTU, Device: v.dev.Index, Err: v.err, Repairs: len(v.repairs)}
	if v.rec != nil {
		r.Failed = v.rec.Failed()
		v.rec.mu.Lock()
		r.Repairs += v.rec.repaired
		v.rec.mu.Unlock()
	}
	return r
}
