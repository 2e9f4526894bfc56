// Package weft is a library for running a flannel-style VXLAN overlay network
// for containers, and a set of example programs built on it.
//
// A node agent built with weft leases a per-node subnet, from etcd v3 or from
// its Kubernetes Node object; builds the VXLAN datapath in the kernel and keeps
// it matched to the leases of its peers; publishes subnet.env for the CNI
// plugin; and hands out sticky pod IPs. It speaks flannel's formats (etcd
// keys and values, node annotations, net-conf.json, subnet.env), so weft and
// flannel nodes can share one cluster.
//
// The packages:
//
//   - lease: the contract. Network configuration, leases and their
//     attributes, watch events, the subnet key codec, the subnet allocator and
//     the Manager interface every lease source implements. Pure code, no I/O.
//   - lease/etcd: the Manager on etcd v3, in flannel's key layout, with
//     ownership-safe conditional writes.
//   - lease/admit: peer admission, the rule every node applies alike to
//     decide which peer leases it programs.
//   - kube: the Manager on Kubernetes Node objects: the Node's PodCIDR is
//     the lease, flannel's node annotations carry the attributes.
//   - subnetenv: reads and writes subnet.env, atomically.
//   - localstate: the node's cached network state on its own disk, for
//     bringing the overlay up while the control plane is unreachable.
//   - ipam: pod IPs on host-local's on-disk store, sticky across a pod's
//     restarts (examples/weft-ipam is the CNI plugin on it).
//   - vxlan: the datapath: the VTEP device and a reconciler that owns its
//     routes, neighbours and FDB entries and repairs drift; and Network,
//     the run loop that ties a lease.Manager to it and reports States and
//     peer events to the embedder.
//   - hostrules: flannel's host rules for the node's lease (masquerade,
//     FORWARD accept rules, blackhole routes), kept level-based and
//     repaired on resync.
//   - underlay: the choice of the interface and public addresses the
//     overlay runs over, with flanneld's policy.
//
// examples/embed and examples/embed-kube are whole agents, one short file
// each, on etcd and on the Kubernetes API.
//
// examples/sandbox shows it all on one machine: go run ./examples/sandbox,
// as root.
//
// Every long-lived piece of state has a desired form computed from its inputs
// and an idempotent step that makes the world match it; events only trigger
// that step. Writes that could clobber another node's data are conditional.
// Malformed input is reported with the file or field that holds it and never
// corrupts state.
package weft
