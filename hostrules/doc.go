// Package hostrules keeps flannel's host rules for a node's lease: the
// masquerade rules (flanneld's --ip-masq), the FORWARD accept rules
// (--iptables-forward-rules) and blackhole routes for the node's subnets
// (--ip-blackhole-route). examples/flanneld uses it; any embedder that
// writes subnet.env with FLANNEL_IPMASQ=true must apply the masquerade
// rules (flannel's CNI plugin then leaves masquerading to the node), and
// can do it with this package.
//
// A Rules is given the node's lease as a Target with Apply, whenever the
// lease or the network changes, and makes the host match it; Resync, run
// periodically (Run does it), checks the host again and repairs what was
// changed from outside, writing and logging nothing when the rules are
// intact. The rules are level-based: Apply and Resync compute the same
// result whatever was there before and however often they run.
//
// What it owns, and nothing else: the nftables table MasqueradeTable
// (ip and ip6); in iptables' filter table (as iptables-nft keeps it in
// nftables, so that iptables -S shows flannel's rules) the rules and the
// FORWARD jump carrying ForwardComment, in ForwardChain; and the routes of
// protocol BlackholeProtocol. An administrator's rules beside them keep
// their places. Everything is written through netlink: no nft or iptables
// binary is needed. A host on iptables-legacy gets ErrLegacyIptables from
// the forward rules.
//
// What a Target changes: the blackhole routes are exactly its subnets. The
// forward rules of a family follow its Network, and the masquerade rules
// its Network and Subnet; a family whose Subnet the Target leaves out (as
// while the node holds no lease) keeps what it had, so that running pods
// keep their outbound NAT until the node holds a lease again. A family
// whose Network is zero while the other family's is set (the network
// config dropped it: dual-stack made single-stack) has its masquerade and
// forward rules removed; a Target with no Network at all (the config not
// known) removes nothing.
//
// Concurrency: a Rules is safe for concurrent use; Apply and Resync are
// serialised, each a few netlink requests. Errors: Apply and Resync try
// every rule set, log each new failure once (and its recovery), and return
// the failures joined, each naming its rule set and network; the next call
// retries. Lifetime: the rules outlive the Rules and the process, as the
// datapath does, so that a restart does not cut the pods' traffic; there
// is nothing to close.
package hostrules
