// Package probe checks that the overlay carries traffic between this node
// and each of its peers, from the node itself, so that failures invisible
// to the node's own datapath are seen and named: a wrong entry on the
// peer's side, a firewall that drops VXLAN's UDP port, a cloud network
// that eats encapsulated traffic, a path whose MTU is below what the
// overlay needs. It belongs to the agent, not to one datapath: a Target
// says what to probe (an overlay address, a public one, an MTU and the
// datapath's overhead), whichever datapath carries it.
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
// # Path MTU
//
// A peer's turn in the rotation also sends, at once with the small echo,
// one of the device's MTU with DF set (IP_PMTUDISC_PROBE: the kernel's
// cached path MTU is ignored, so that the path is what is tested). Small
// answered and full-size lost is StateMTUBlackHole: a switch, a cloud
// network or a tunnel under the underlay drops what is larger than it
// carries, silently (VXLAN's outer packets leave without DF, so no ICMP
// "fragmentation needed" comes back). The size the path carries is then
// searched over the next rounds, the peer re-probed every round as a
// failing one: each check sends the full size again and three sizes that
// cut the interval still open into quarters, so that it is found within
// SearchRounds rounds (6 for a 1450-byte device). The black hole is
// logged once, when its size is known, with the fix: "the underlay path
// carries N bytes, the overlay needs M: lower Backend.MTU ... or raise
// the underlay path's MTU". PathMTUBound is the documented time to that
// line. A peer's kernel answers an echo of any size to its overlay
// address, flanneld's as weft's, so mixed clusters are checked alike.
//
// # Underlay
//
// A peer that does not answer over the overlay gets an ICMP echo to its
// public address, and, if Config.UnderlayTCPPort is set (for networks
// that filter ICMP between nodes), a TCP connection to that port, which a
// host answers with SYN-ACK or RST whatever listens, reset at once. An
// answer is StateOverlayDown: "underlay reachable, overlay not: UDP 8472
// dropped on the path or at the peer, or the peer's datapath"; none is
// StateUnderlayDown. TCP is opt-in because a connection to a service's
// port is seen by the service (kubelet logs a failed TLS handshake).
//
// # Bounded cost
//
// Each round (Config.Interval) probes Config.Sample peers, the next ones
// in an order of its own (a hash of the peer's subnet, randomly seeded, so
// that nodes do not all probe the same peers at once), and
// re-probes up to Sample peers found failing (unreachable, or behind a
// black hole), so that a recovery is seen within a round. A node therefore
// probes at most 2·Sample peers a round, whatever the size of the cluster,
// and the cluster N·2·Sample: O(N·k), never O(N²). A round probes at most
// one peer of each public address: leases may share one (a node's, while
// it moves subnets, or a writer's naming another host's address with
// subnets routed to it), and any host, whatever was published, gets at
// most one check's packets (a few echoes, one TCP connection) per node
// per Interval. A peer sharing its address waits for a round without the
// other. Every peer is probed at
// least once per Period (ceil(N/Sample) rounds) while Config.Ready lets
// the rounds run. A probe of a peer is a small echo and, on its turn, a
// full-size one (four sizes while its black hole is searched), or when
// the small one is not answered an underlay check; each echo is up to
// three requests, spread over Config.Timeout, and one reply answers it.
// A healthy round sends 2·Sample echo requests (BenchmarkProbeCost: 16
// and 12 KiB a round at the defaults, whatever the peers' number). A
// probe cut short by its context records nothing. On-demand probes
// (Probe) run a few at a time and start at most ten a second.
//
// # Results
//
// Result gives a peer's last probe, its State and a Diagnosis naming the
// fix; Counts aggregates them for metrics, whose label cardinality must
// not grow with the cluster. Each change of a peer's state is logged once:
// unreachable (with what the underlay check found), a change of that
// finding, a black hole named, a recovery. Probing never affects
// readiness by itself.
//
// # Concurrency, lifetimes, errors
//
// A Prober's methods are safe for concurrent use. Run opens one raw ICMP
// socket per family in Config.Namespace (it needs CAP_NET_RAW) and closes
// them on return; Probe works only while Run runs. An error opening a
// socket is returned by Run: probing is then off, and nothing else of the
// node depends on it.
package probe
