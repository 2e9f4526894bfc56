// Package status is a node's overlay status as one JSON document, what
// serves it over HTTP, and a client for it: the view behind flanneld's
// /status and weftctl, built from vxlan's public API so that any embedder
// can serve the same.
//
// A Document says whether the node is ready and why, its lease and how it
// got it, the network config in force and where it came from, the
// control-plane condition, each family's device and last sync, every peer
// with what is programmed against what is desired, its admission verdict,
// its last change and last probe, and the recent repairs.
//
// # Cost
//
// A Document is built from snapshots (vxlan.Datapath.Status and
// Network.Peers copy under their locks, briefly, and never wait for a
// reconcile) and serialised after every lock is let go. Peers are paged
// (Query.Limit, Query.After) and filtered (Query.Failing, Query.Rejected,
// Query.Peer, Query.Family), so that a status of a 20,000-peer node costs
// milliseconds and its answer holds only the page asked for.
//
// # Serving
//
// A Handler builds and writes at most its Capacity of answers at once
// (and probes), and tells the rest "busy"; give each server a Capacity of
// its own so that one server's clients never take another's. MaxPage cuts
// pages on a server anyone can reach. A Server bounds what its clients
// hold: timeouts for a request's header, the request, the answer and idle
// keep-alive, small headers, and a connection cap that admits every new
// connection and closes another (the one idle longest after an answer,
// else the oldest), so that a health probe is never kept out by clients
// that connect and wait. An answer its client does not read is dropped
// at the write deadline, in the kernel too.
//
// # Stability
//
// Field names are stable within Version; a change that breaks a reader
// bumps it. Peers are ordered by family (IPv4 first), then subnet.
//
// # Concurrency, errors
//
// A Source, its Handler, a Capacity and a Server are safe for concurrent
// use. Client methods
// return an error naming the daemon's address when it cannot be reached
// or answers with anything but a Document.
package status
