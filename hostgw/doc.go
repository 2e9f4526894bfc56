// Package hostgw is weft's host-gw datapath, flannel's host-gw backend:
// no device and no encapsulation, a route per peer,
//
//	<peer subnet> via <peer PublicIP> dev <uplink>
//
// (PublicIPv6 for an IPv6 subnet), so that every node must sit on one L2
// segment with every other. The MTU is the uplink's.
//
// # Wire format
//
// A host-gw lease has BackendType "host-gw" and no backend data: Attrs
// builds it. flannel marshals the missing data as null, which its kube
// subnet manager writes as the backend-data annotation "null", and leaves
// out of the etcd value (omitempty); weft's lease sources read both as no
// data.
//
// # Admission
//
// Admit is the backend's rule for a peer lease's backend part: its
// BackendType must be host-gw, and it carries no identity of its own (the
// public address is the peer's, which admission already keeps unique).
// Whether a peer can be reached at all is a fact of this node's kernel,
// not of the lease: a peer whose public address is on no network the
// uplink is connected to (no on-link route covers it) would route through
// the default gateway, which drops or misroutes pod traffic. The Datapath
// does not program it and lists it failed with ReasonNotOnLink, and takes
// it up as soon as the network appears.
//
// # Ownership and drift
//
// Routes the datapath owns carry its route protocol (default 157, `ip
// route show proto 157`). A Datapath keeps them as desired: it
// reconciles when the peers or the lease change, when a route or link
// notification departs from what it wants (a route deleted or replaced by
// hand, the uplink's networks changing), and every ResyncInterval. Another
// program's route to a peer's subnet is never overwritten: that peer is
// failed with ReasonConflict, and every other peer is programmed.
//
// # Concurrency, errors, lifetimes
//
// A Datapath's methods are safe for concurrent use, Run included. Run
// returns only when its context ends. A reconcile error (the table cannot
// be listed, the node's public address is not on the uplink) leaves the
// datapath unsynced with the reason in Status; a refused peer is that
// peer's failure alone. Close releases the sockets and leaves every route
// in place, so that a restarting agent drops no traffic; the namespace
// handle stays the caller's.
package hostgw
