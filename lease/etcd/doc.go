// Package etcd implements lease.Manager on etcd v3, in flannel's key layout,
// so that weft and flanneld nodes can share one etcd-backed network.
//
// The layout under the prefix (default /coreos.com/network):
//
//	<prefix>/config                 net-conf.json
//	<prefix>/subnets/10.244.3.0-24  {"PublicIP":"198.18.0.7",...,"WeftOwner":"node-a"}
//
// A subnet key is attached to an etcd lease with the configured TTL (24h by
// default). A key without an etcd lease is a reservation: it never expires,
// no other node is ever given it, and this package never deletes it.
//
// What this package promises:
//
//   - A node never takes or keeps a subnet another node holds. Every write is
//     an etcd transaction conditional on the key not existing (a create) or on
//     its revision being the one this node last saw (a renewal). A renewal
//     that finds the key owned by someone else writes nothing and reports
//     lease.ErrLeaseLost.
//   - A store that forgets (wiped, or restored from a backup) never moves a
//     node whose subnet is free: whichever path finds its key missing (the
//     check after a reconnection, a renewal, the read after a watch ended)
//     creates it again with a create conditional as above, and Acquire
//     prefers the free subnet the node runs on (AcquireRequest.Previous) to
//     an older lease of its own that a backup brought back, which it then
//     deletes. A node moves only when another node holds its subnet.
//   - A node never keeps or adopts a key of its own, reservation or not,
//     that overlaps an older key (admission's order: create revision,
//     then key), as every peer's admission would reject it. Such a key is
//     logged by key with the fix, and counted in Stats.Conflicts.
//   - New does not connect, nor log in: an unreachable etcd, or one that
//     refuses the user name and password, is waited out by the methods
//     that wait, and reported (ErrAuthentication for a refused login).
//     Tokens are renewed as etcd forgets them.
//   - Acquire costs one Range to list every lease and the config, one
//     LeaseGrant and one Txn. A lost race is answered inside the same Txn with
//     a fresh listing, so retries cost no extra reads.
//   - WatchLeases lists, then watches from the listing's revision + 1 with
//     WithRequireLeader and progress notifications, resuming after every
//     disconnect from the last revision seen. When etcd has compacted that
//     revision away, it lists again and sends the difference, attribute
//     changes included.
//   - Malformed values are skipped with a warning naming the key; they never
//     stop a watch. Their subnets still count as taken.
//   - A value over a size limit (lease.MaxValueSize and the field limits)
//     is sent as a lease.Lease with Invalid set and nothing of the value,
//     for admission to report by key, rule and limit; nothing of it is
//     kept. Listings come in pages sized by the bytes of the one before
//     (about 1 MiB each), and the client New makes takes no response over
//     MaxRecvBytes: a page over it is asked for again with fewer keys, and
//     a watch response over it makes the watcher list again. What a writer
//     puts in its keys thus costs a watcher a bounded page at a time, and a
//     bounded entry per key after.
//
// # Concurrency, ownership, errors, lifetimes
//
// A Manager or an Observer is safe for concurrent use; one serves one node
// (an Observer none). It owns the etcd client it made, and Close releases
// it; an Options.Client stays the caller's. The channels the watches send
// on are the caller's, and never closed.
//
// Methods that wait (Acquire, Keep, the watches) retry what can be waited
// out (an unreachable etcd, no config yet), reporting it through Stats and
// Condition, until their context ends; Config and OwnLease do not wait,
// and return ErrNoConfig or an error matching lease.ErrInvalidConfig.
// A refused login matches ErrAuthentication, and is retried: the operator
// may fix the password in etcd. Errors retrying cannot fix match
// lease.ErrInvalidAttrs, or lease.ErrLeaseLost for a subnet another node
// holds now, and ErrIdentityCollision for a name another host holds.
//
// Closing the Manager or ending Keep's context leaves the key in etcd: it
// lapses at its TTL unless a restarted agent keeps it, or Release deletes
// it first.
package etcd
