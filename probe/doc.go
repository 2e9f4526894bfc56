// Package probe checks that the overlay carries traffic between this node
// and each of its peers, from the node itself, so that failures invisible
// to the node's own datapath are seen: a wrong entry on the peer's side, a
// firewall that drops VXLAN's UDP port, a cloud network that eats
// encapsulated traffic.
//
// # What is probed
//
// A Prober sends ICMP echo requests over the VXLAN device to each peer's
// VTEP address: the first address of the peer's subnet, which weft and
// flannel both put on the device. ICMP was chosen over a UDP probe that
// only a weft agent would answer for three reasons. The peer's kernel
// answers, so a mixed cluster's flanneld nodes are probed like weft's.
// The reply crosses the overlay back, so one probe checks both nodes'
// routes, neighbours and FDB entries for each other. And no listener is
// needed, so a probe tests the datapath, not a daemon. The cost: a host
// firewall that drops ICMP on the VXLAN device makes a peer look
// unreachable when only ICMP is dropped.
//
// # Bounded cost
//
// Each round (Config.Interval) probes Config.Sample peers, the next ones
// in an order of its own (a hash of the peer's subnet, randomly seeded, so
// that nodes do not all probe the same peers at once), and
// re-probes up to Sample peers found unreachable, so that a recovery is
// seen within a round. A node therefore sends at most 2·Sample probes a
// round, whatever the size of the cluster, and the cluster N·2·Sample:
// O(N·k), never O(N²). Every peer is probed at least once per Period
// (ceil(N/Sample) rounds) while Config.Ready lets the rounds run. A probe
// is up to three echo requests, spread over Config.Timeout; one reply
// makes the peer reachable, and a probe cut short by its context records
// nothing. On-demand probes (Probe) run a few at a time and start at most
// ten a second.
//
// # Results
//
// Result gives a peer's last probe; Counts aggregates them for metrics,
// whose label cardinality must not grow with the cluster. A peer that
// turns unreachable is logged once, and once when it recovers. Probing
// never affects readiness by itself.
//
// # Concurrency, lifetimes, errors
//
// A Prober's methods are safe for concurrent use. Run opens one raw ICMP
// socket per family in Config.Namespace (it needs CAP_NET_RAW) and closes
// them on return; Probe works only while Run runs. An error opening a
// socket is returned by Run: probing is then off, and nothing else of the
// node depends on it.
package probe
