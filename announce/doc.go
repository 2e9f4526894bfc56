// Package announce makes a pod's new MAC known the moment its interface
// is set up, so that a pod re-created under its name with its sticky IP
// (package ipam) is reachable at once rather than after its neighbours'
// caches go stale (20 to 40 s).
//
// A re-created pod has a new veth, and so a new MAC, behind the same IP.
// Two kinds of neighbour cache still hold the old MAC, each until the
// kernel's reachability timers run out:
//
//   - the node's, on the bridge the pod hangs off (cni0): it carries the
//     node's own traffic to the pod and every packet another node sends it;
//   - each other pod's on the same bridge.
//
// Announce deals with both. In the node's namespace (the caller's) it moves
// the node's entry for each of the pod's addresses to the new MAC (state
// STALE: the kernel confirms it on first use), on the device the node
// routes the address through when that is the pod's veth peer or its
// bridge; it touches only entries the kernel learnt, never a permanent one
// another program set. Only the addresses the pod's interface holds are
// announced: the caller's list comes from another plugin's result. Then, from the pod's
// interface inside the pod's namespace, it sends a gratuitous ARP request
// for each IPv4 address and an unsolicited neighbour advertisement (override
// flag set, to all nodes) for each IPv6 address: every neighbour on the
// bridge that caches the address takes the new MAC, and the bridge learns
// on which port the MAC now is.
//
// A frame sent right after a veth is made can be dropped: the kernel turns
// the carrier and the transmit queue on in its link-watch work, which may
// run up to a second later. So Announce first waits until the pod's
// interface, its peer in the node's namespace and the bridge over that peer
// are operationally up, and then sends each frame a few times, spaced out
// (Options).
//
// Announce holds nothing between calls; it opens and closes its netlink
// handles and its packet socket within the call, and is safe to call from
// several goroutines. Errors are wrapped with %w; an interface that does
// not come up within Options.UpTimeout is not an error: the frames are sent
// anyway and Report.Up says so.
package announce
