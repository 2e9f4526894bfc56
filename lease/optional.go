package lease

import (
	"context"
	"encoding/json"
	"net/netip"
	"time"
)

// The interfaces below are optional: a Manager implements those its store
// supports, and a consumer (agent.Network) detects them with a type
// assertion, so that an embedder wires nothing by hand. A wrapper that
// embeds a Manager hides them unless it passes them through.

// Hints are what a lease source says about how this node should run its
// datapath, before it holds a lease: in kube mode, the node's Node
// annotations. Every field is optional.
type Hints struct {
	// PublicIP and PublicIPv6 are the underlay addresses the operator chose
	// for this node (flannel's node-public-ip annotations). An address the
	// embedder sets explicitly wins over them.
	PublicIP, PublicIPv6 netip.Addr
	// BackendData and BackendV6Data are what the source publishes for this
	// node now, nil if nothing: a datapath keeps the VTEP MACs found there,
	// so that peers' entries stay valid across a restart or a takeover
	// from flannel, whose MACs were random.
	BackendData, BackendV6Data json.RawMessage
}

// A HintReader is a Manager that holds per-node settings (package kube's
// is). Hints may fail while the store is unreachable or the node not yet
// registered; the caller retries. An error for a malformed setting names
// it, and retrying does not help until it is fixed.
type HintReader interface {
	Hints(ctx context.Context) (Hints, error)
}

// A ReadyNotifier is a Manager that wants to know when this node's
// datapath has converged on its lease and carries traffic: package kube
// then clears the Node's NetworkUnavailable condition, which the
// scheduler waits for. NetworkReady must not block; it may be called more
// than once, and each call after the first is a no-op.
type ReadyNotifier interface {
	NetworkReady()
}

// A ConditionReporter is a Manager that can say what it is waiting for or
// why its requests fail right now ("etcd unreachable: ...", "waiting for
// PodCIDR"), or "" when nothing is. agent.Network.Ready adds it to its own
// reason, so that a readiness probe names the cause. It must not block.
type ConditionReporter interface {
	Condition() string
}

// An ExpiryReader is a Manager whose leases lapse unless renewed
// (lease/etcd's): Expiry returns when this node's lease k lapses as of its
// last renewal, and false if k is not held or does not lapse (an etcd
// reservation). Lease.Expiration is only what Acquire returned; a cache
// of the node's state (package localstate) asks Expiry for the newest.
// It must not block.
type ExpiryReader interface {
	Expiry(k Key) (time.Time, bool)
}

// A RenewalCounter is a Manager that renews this node's lease
// (lease/etcd's): Renewals counts the successful renewals since the
// Manager was made, for status output. It must not block.
type RenewalCounter interface {
	Renewals() int64
}

// A Republisher is a Manager that can change what a held lease publishes
// in place: the same subnet with new attributes, such as a new public
// address after the node's underlay address changed (DHCP, a NIC
// replaced). Peers learn of it through their watch, as of any change.
// Republish writes only if l is still this node's, as Keep last saw it
// (a conditional write), and returns the lease as now published; an
// error matching ErrLeaseLost, writing nothing, if it is not. Stop
// keeping l (end Keep's context) first, and keep the returned lease
// after: a Keep of l would take the new attributes for another host's.
type Republisher interface {
	Republish(ctx context.Context, l Lease, attrs Attrs) (Lease, error)
}

// A Releaser is a Manager that can give a lease back before it expires:
// a node being decommissioned frees its subnet at once, instead of holding
// it for its TTL (a day, by default, in lease/etcd). Release deletes l's
// key only while it still belongs to this node (Node and, for a lease
// flannel wrote, its public address), and succeeds if the key is already
// gone. It returns an error matching ErrLeaseLost, deleting nothing, if
// another node holds the key now. Stop keeping l (end Keep's context)
// before releasing it: a Keep that sees its key vanish re-creates it.
type Releaser interface {
	Release(ctx context.Context, l Lease) error
}

// An EndpointReporter is a Manager that knows the control-plane endpoints
// it talks to (lease/etcd's: its etcd URLs). An agent protects their
// addresses from peer leases (see admit.EndpointPrefixes): a peer subnet
// that covers one is rejected, so that no lease can route the node's way
// to its control plane into the overlay. Endpoints are URLs or
// host[:port]; it must not block.
type EndpointReporter interface {
	Endpoints() []string
}

// A Watcher is the read-only half of a Manager: what an observer with no
// lease of its own (a monitor, a status tool) needs. Manager implements
// it, and so does lease/etcd's Observer, which needs no node identity.
type Watcher interface {
	// Config, WatchConfig and WatchLeases are as on Manager.
	Config(ctx context.Context) (Config, error)
	WatchConfig(ctx context.Context, ch chan<- Config) error
	WatchLeases(ctx context.Context, ch chan<- Batch) error
}
