package lease

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// The datapath contract: what an agent (package agent) asks of the
// datapath of one backend type (vxlan, host-gw, WireGuard), in lease's and
// the standard library's types only, so that a datapath package imports
// nothing of weft's but this one, and the agent imports no datapath. An
// embedder hands the agent a DatapathFactory for each backend type it
// links; a VXLAN-only binary links no other datapath's code.
//
// The agent drives a datapath through these steps, each level-based (it
// says what should be, never what changed):
//
//  1. Check, then New, once per family the network config enables, before
//     the agent acquires a lease: the datapath builds what it needs that
//     does not depend on the subnet (VXLAN: the flannel.<VNI> device).
//  2. BackendData: what the node publishes in its lease for the family
//     (Attrs.BackendData, BackendV6Data), beside BackendType, the
//     factory's type.
//  3. SetSubnet with the subnet the node holds, again whenever it changes
//     (the zero Prefix: none held now).
//  4. SetPeers with every admitted peer of the family (a whole set), and
//     SetPeer and RemovePeer for one admitted peer's change between two
//     whole sets. Admission (package lease/admit) has judged each peer's
//     lease, including its backend data, by the backend's rule; a datapath
//     never sees a rejected one.
//  5. Report, at any time, from any goroutine: converged or not, the MTU
//     pods should use, the peers the kernel refused, the repairs made.
//  6. SetUnderlay when the node's underlay address or interface changes.
//  7. Close after Run has returned. Nothing is torn down: devices, routes
//     and entries stay, so that a restarting agent drops no traffic.
type DatapathFactory interface {
	// Check reports whether the node can run s: the backend config
	// parses (an error is a *ConfigError naming the field), and the
	// underlay carries it (an MTU that fits, say). It creates nothing, so
	// that a config one family cannot run leaves no device behind for the
	// other. An error is the agent's reason to wait, on its Ready.
	Check(s DatapathSetup) error
	// New creates the family's datapath for s. The agent calls Run on it
	// in a goroutine of its own, and Close after Run returned.
	New(s DatapathSetup) (Datapath, error)
}

// DatapathSetup is what the agent knows of one family when it sets a
// datapath up.
type DatapathSetup struct {
	// Node is the node's stable identity: the seed of what a datapath
	// derives (VXLAN's VTEP MAC).
	Node string
	// Backend is net-conf.json's Backend object (Config.Backend), for the
	// factory to parse; Type names the factory's backend type.
	Backend json.RawMessage
	// IPv6 is the family.
	IPv6 bool
	// Public is the address peers send to, which the lease advertises;
	// Local the address the node sends from: Public, or behind a NAT
	// (flannel's --public-ip) the interface's own.
	Public, Local netip.Addr
	// Underlay is the index of the interface holding Local, OnLink
	// Local's prefix on it: a peer whose public address is in it shares
	// the node's L2 segment (host-gw's requirement, VXLAN's
	// DirectRouting).
	Underlay int
	OnLink   netip.Prefix
	// Published returns the backend data this family published for the
	// node before, most authoritative first: the lease source's hints
	// (kube's annotations), the node's own lease in the store, the local
	// state. Peers hold it, so a datapath keeps what it can of it (VXLAN:
	// the VtepMAC, for the same VNI). It may read the store, bounded; call
	// it only when needed, at most once. Never nil.
	Published func() []json.RawMessage
	// OnChange is called after every reconcile, without the datapath's
	// locks: what Report says may have changed. It must not block.
	OnChange func()
	// Namespace is the network namespace to program, as a file
	// descriptor (a netns.NsHandle); 0 or -1: the caller's. The agent's
	// caller keeps it open until Run has returned.
	Namespace int
	// ResyncInterval is the datapath's periodic reconcile; 0: its
	// default.
	ResyncInterval time.Duration
	// Logger receives the datapath's lines; nil: slog.Default().
	Logger *slog.Logger
}

// A Datapath programs one family's admitted peers for one backend type.
// Its methods are safe for concurrent use, Run's included.
type Datapath interface {
	// BackendData is this family's backend data: what peers need to
	// reach the node (VXLAN's {"VNI":1,"VtepMAC":"..."}; nil for
	// host-gw's none). Fixed at New.
	BackendData() json.RawMessage
	// Run reconciles until ctx ends: at every change, on drift the kernel
	// reports, and periodically.
	Run(ctx context.Context) error
	// SetSubnet gives the datapath the node's subnet of its family (the
	// zero Prefix: none is held now). A peer inside it is never
	// programmed.
	SetSubnet(subnet netip.Prefix)
	// SetUnderlay moves the datapath to another local address or
	// underlay interface, with the address's prefix there.
	SetUnderlay(local netip.Addr, underlay int, onLink netip.Prefix)
	// SetPeers replaces the admitted peers: level-based, the whole set.
	SetPeers(peers []DatapathPeer) error
	// SetPeer adds or changes one admitted peer, RemovePeer removes one,
	// both between two SetPeers: the fast path for one lease's change. A
	// peer the kernel refuses is that peer's failure alone (Report's
	// Failed), retried; the error says so.
	SetPeer(p DatapathPeer) error
	RemovePeer(subnet netip.Prefix) error
	// Report says how the datapath stands. It never waits for a
	// reconcile in progress.
	Report() DatapathReport
	// Close releases what the datapath holds open (sockets), after Run
	// returned. It tears nothing down.
	Close()
}

// ErrPeerRefused is matched by a datapath's error for one peer the kernel
// refused (SetPeer's, say): that peer's failure alone, retried by the
// datapath, never the datapath's.
var ErrPeerRefused = errors.New("the kernel refused the peer's objects")

// DatapathPeer is one family's half of an admitted peer lease, as a
// datapath programs it.
type DatapathPeer struct {
	// Subnet is the peer's subnet of the family.
	Subnet netip.Prefix
	// PublicIP is the peer's underlay address of the family.
	PublicIP netip.Addr
	// MAC is the link-layer address the peer's backend data names, where
	// the backend has one (VXLAN's VtepMAC, admission's uniqueness key
	// for it); zero otherwise.
	MAC MAC
	// Data is the peer's backend data for the family, for a backend
	// whose admission rule keeps it (WireGuard's {"PublicKey","Port"});
	// nil where MAC says all (VXLAN) or there is none (host-gw).
	Data json.RawMessage
}

// DatapathReport is how a datapath stands (Datapath.Report).
type DatapathReport struct {
	// Synced says the datapath has applied the current subnet and peers,
	// each peer programmed or failed.
	Synced bool
	// MTU is the MTU pods should use over this datapath: the device's,
	// or the uplink's for one without a device. 0 until known.
	MTU int
	// Device is the index of the datapath's own interface, 0 if it has
	// none: its addresses are not the node's underlay.
	Device int
	// Failed are the subnets of the peers the kernel refused, sorted.
	Failed []netip.Prefix
	// Repairs counts the corrections of drift made so far.
	Repairs int
	// Err is the last reconcile's error, "" if none.
	Err string
}
