// Package admit is the trust boundary between the lease sources and the
// datapath. Every peer a node programs passes through it: a lease that is
// buggy, stale or hostile is rejected here, with a reason, and never reaches
// the kernel.
//
// Admission is level-based. The admitted peers are a function of every known
// lease, this node's own lease, the network config and local facts (the
// node's addresses and connected prefixes, and the addresses it needs to
// reach its control plane). A Table holds those inputs; whenever one changes
// it recomputes the verdicts that can depend on the change and returns the
// difference in admitted peers. The result is always what Compute would give
// for the same inputs from scratch; no event decides admission on its own.
//
// # Rules
//
// A lease gives one candidate peer per family the node runs (its IPv4 half
// and its IPv6 half are judged apart). A candidate is admitted only if every
// rule holds:
//
//   - Value: the lease source took the lease's value: it is within the
//     size limits of package lease (lease.Lease.Invalid is empty).
//   - Backend: the lease's backend type and VNI are the node's, and its
//     backend data holds a VtepMAC.
//   - VtepMAC: unicast and not zero.
//   - PublicIP: a unicast address of the family; not unspecified, loopback,
//     multicast, link-local, broadcast or reserved; not one of this node's
//     own addresses, nor the broadcast address of one of its connected
//     prefixes.
//   - Subnet: inside the family's Network, and longer than it.
//   - Overlaps: the subnet overlaps neither this node's subnet, nor a
//     connected prefix of this node, nor a protected (control-plane)
//     prefix, nor an older admitted peer's subnet.
//   - Identity: no older admitted peer of another node has the same
//     VtepMAC or the same PublicIP. Two leases of one node (the same
//     Owner, VtepMAC and PublicIP, as while a node moves subnets) may share
//     both.
//
// This node's own lease (Facts.Own) is not a peer. It counts as the oldest
// of all in the overlap and identity rules, so that no peer can claim this
// node's subnet, VtepMAC or address. Other leases this node owns
// (Facts.Node, an old lease left to expire) are ignored.
//
// A connected prefix that holds the whole Network (an underlay 10.0.0.0/8
// from which the overlay 10.244.0.0/16 was carved) does not count against
// peers: routing peers out of it is the point of such a layout.
//
// # Conflicts
//
// When two candidates conflict, the older wins: lease.Lease.Older, which
// every node computes alike from data the lease source gives all of them (an
// etcd key's create revision, a Node's creation time). The rules are applied
// in that order, so a rejected candidate never blocks a younger one, and a
// newcomer can never displace an established peer. When a winner goes away
// (its key is deleted, or it is rejected by a later change), what it
// shadowed is admitted in its place.
//
// # Memory
//
// A Table holds one candidate per family for every lease it is given,
// whoever wrote it, as the rules need them all (a rejected lease is
// admitted when its blocker goes or the facts change): about 130 bytes
// and a map entry each, its key packed, with no text. What to fix is
// written when a verdict is asked for, not kept.
//
// # Concurrency and cost
//
// A Table is not safe for concurrent use; its owner serialises calls.
// Judging a candidate costs a few lookups among the admitted peers, which
// never conflict with one another, however many leases share a subnet, a
// MAC or an address. An incremental Apply judges again the leases it
// changes and, when a verdict changes, those that conflict with it: its
// cost is in proportion to them, O(k log N), not to the size of the table.
// SetFacts and a snapshot judge everything, in O(N log N). A rejection's
// detail names one of the older leases that block it, which may depend on
// the order things happened in; its rule does not.
package admit
