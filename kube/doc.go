// Package kube is a lease.Manager on Kubernetes Node objects, compatible
// with flannel's kube subnet manager: a node's subnet is its
// spec.podCIDR(s), and what peers need to reach it (public IPs, backend
// type and data) is published in flannel's node annotations.
//
// What it promises:
//
//   - A PodCIDR that is not assigned yet is a wait, not an error: Acquire
//     watches the Node, logs one actionable message at most once a minute,
//     and reports "waiting for PodCIDR" through Stats until one arrives.
//   - A PodCIDR outside the configured Network is reported naming both
//     CIDRs, and waited out in the same way: either can be fixed without a
//     restart.
//   - Every write is a patch of the fields this package owns, carrying the
//     resourceVersion it was computed from; a conflict is re-read and
//     retried, never overwritten blindly.
//   - Peers come from one shared informer through a per-node work queue and
//     are handled level-based: whatever the sequence of updates, each node
//     ends up reported as its latest state says. The IPv4 and IPv6 parts of
//     a node are compared independently, so a change of one family alone is
//     never lost.
//   - A node with malformed annotations is skipped with a warning naming it
//     and the annotation; nodes not marked kube-subnet-manager=true are not
//     peers yet.
//   - The informer's cache keeps of each Node only what this package reads
//     (name, PodCIDRs, creation time, flannel's annotations), and of each
//     annotation at most 512 bytes: a larger one (the API server allows
//     256 KiB) is kept as its size alone, and the node's lease is sent as a
//     lease.Lease with Invalid set, for admission to report by key, rule
//     and limit.
//   - With Options.AssignPodCIDRs, the agent assigns its own node a free
//     PodCIDR, safely against other agents doing the same at once (see
//     Allocate). Another node's pod-cidr-claim takes space only as one
//     PodCIDR it could be given; any other claim takes none, and is
//     reported naming the Node, the annotation and the fix.
//   - Two hosts presenting one node name (cloned VMs) never both hold the
//     Node: the host whose public-ip is published keeps it while it is
//     alive, and the other's Acquire waits, not ready, naming both hosts
//     and the fix, writing at most twice per six Options.ChallengeTimeout
//     (see identity.go); one whose holder is gone takes the Node over. The
//     errors match lease.ErrIdentityCollision.
//
// A consumer of this package does not link the etcd client.
//
// # Concurrency, ownership, errors, lifetimes
//
// A Manager is safe for concurrent use and serves one Node. The NodeClient
// stays the caller's. The Manager writes, on its own Node only: the
// annotations flannel's agent writes (public-ip, backend-type,
// backend-data and their IPv6 twins, kube-subnet-manager), the
// NetworkUnavailable condition (see NetworkReady and
// Options.LeaveNetworkCondition), a host-claim annotation while it asks
// whether another host holding its Node is alive, and with
// Options.AssignPodCIDRs the spec.podCIDRs and a claim annotation. It never
// writes another Node.
//
// What can be waited out (no PodCIDR, an API server away, a Node not
// registered yet) is waited out by Acquire, Keep and the watches, and said
// through Stats and Condition; Config, Hints and PodNodeName do not wait.
// An error for a malformed annotation names it and matches
// lease.ErrInvalidAttrs; one for net-conf.json matches
// lease.ErrInvalidConfig. The Kubernetes API's errors are wrapped, for
// k8s.io/apimachinery/pkg/api/errors to classify.
//
// Close stops the informer. Everything written stays on the Node, as
// flannel leaves it: the Node itself is the lease, and goes with it.
package kube
