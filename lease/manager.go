package lease

import (
	"context"
	"errors"
)

// ErrLeaseLost means a node no longer holds the lease it had: the key expired,
// was deleted, or is now held by another owner. A node that sees it must stop
// routing the old subnet and acquire again.
var ErrLeaseLost = errors.New("lease lost")

// An AcquireRequest says what lease a node asks for.
type AcquireRequest struct {
	// Attrs are published with the lease. Attrs.Owner need not be set:
	// the Manager publishes its own node (Manager.Node) as the owner,
	// whatever the request says, and ownership checks compare that.
	Attrs Attrs
	// Previous is the subnet the node held before, for example as read back
	// from subnet.env after a restart, or the zero Key. It is a preference,
	// never a claim: a manager returns it only if no other node holds it.
	Previous Key
}

// A Manager is a source of subnet leases: etcd (package lease/etcd) or the
// Kubernetes Node objects (package kube). One Manager serves one node. Its
// methods are safe for concurrent use.
//
// Methods that wait (Acquire, Keep and the watches) ride out conditions that
// resolve themselves, such as an unreachable store or a PodCIDR not yet
// assigned, by retrying until ctx is done. They return early only for errors
// retrying cannot fix. The watches send on a channel the caller owns; a
// Manager never closes it.
type Manager interface {
	// Node returns the node this Manager serves: the owner of the leases
	// it acquires, and the name its store knows the node by.
	Node() string

	// Config returns the network configuration in force.
	Config(ctx context.Context) (Config, error)

	// WatchConfig sends the configuration in force and then every change to
	// it, in order, until ctx is done; then it returns ctx.Err(). A change
	// that does not parse is logged and skipped, so the last good
	// configuration stays in force.
	WatchConfig(ctx context.Context, ch chan<- Config) error

	// Acquire obtains a lease for this node, in this order of preference:
	//
	//  1. a lease this node already holds: one whose Attrs.Owner is
	//     Node(), or, for a lease written by flannel (which has no
	//     Owner), one whose PublicIP is req.Attrs.PublicIP. A Manager
	//     whose store can be restored from a backup (lease/etcd) prefers
	//     req.Previous, when no lease exists for it, to leases of its own
	//     that are not reservations: those are what the backup brought
	//     back, and the node runs on req.Previous;
	//  2. req.Previous, if no lease exists for it and it lies in the
	//     configured range;
	//  3. a free subnet of the configured range.
	//
	// It never takes a subnet another node holds, and publishes req.Attrs
	// on the lease it returns.
	Acquire(ctx context.Context, req AcquireRequest) (Lease, error)

	// Keep holds l until ctx is done, renewing it before it expires, and
	// then returns ctx.Err(). Each renewal reads the lease as stored and is
	// conditional on it being unchanged since that read and still owned by
	// this node; if it is gone or owned by another node, Keep returns an
	// error matching ErrLeaseLost without writing anything.
	Keep(ctx context.Context, l Lease) error

	// WatchLeases sends the leases of all nodes, this one included: first a
	// Batch with Snapshot set holding every current lease (or such a
	// snapshot in parts, see Batch), then incremental batches, until ctx is done; then it returns ctx.Err(). Changes of
	// attributes on a known subnet arrive as Changed events. A lease whose
	// value does not parse, or whose Attrs fail Validate, is logged, naming
	// its key, and skipped.
	WatchLeases(ctx context.Context, ch chan<- Batch) error
}

// An OwnLeaseReader is a Manager that can say, before Acquire, what the
// store already holds under this node: the lease Acquire would keep, by
// the same ownership rule (Attrs.Owner, or for a lease flannel wrote, the
// public IP). An agent.Network uses it to keep the backend data that
// lease publishes (its VTEP MACs), so that a node migrating from flannel, or rebooting, changes
// nothing its peers hold. It returns false if there is no such lease.
//
// req is what Acquire would be asked: Attrs for ownership, Previous for
// the choice between several leases of this node's, as Acquire makes it.
type OwnLeaseReader interface {
	OwnLease(ctx context.Context, req AcquireRequest) (Lease, bool, error)
}
