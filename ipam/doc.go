// Package ipam hands out pod IPs from a store on the host-local CNI
// plugin's on-disk layout, and gives a pod restarted under the same
// namespace and name the IPs it had, so that a pod on an edge node that
// reboots while cut off from its cluster keeps its address.
//
// What it promises:
//
//   - Compatibility: one file per reserved IP holding
//     "<container ID>\r\n<interface>", a "lock" file both take, and
//     "last_reserved_ip.<i>", so that a node can switch between host-local
//     and weft, either way, without losing a reservation. Pod records live
//     in a subdirectory host-local never takes for a reservation.
//   - Crash safety: a reservation is created exclusively (O_EXCL), written
//     and fsynced under the lock; a record is replaced atomically
//     (temporary file, fsync, rename, directory fsync), and a new one,
//     having no old content to lose, is made durable after it is in
//     place. An empty or garbage reservation, left by a writer that died,
//     is reclaimed, never held forever; a torn new record reads as none.
//     Two things a power cut may lose, by design, each harmless: the
//     round-robin position (last_reserved_ip, written in place without a
//     sync, as host-local writes it) and the time a DEL stamps on a
//     record, which the next sweep of expired hints then notices later.
//   - Cost: on disk, creating a file is the most expensive step of an
//     ADD, so the store creates few. Beside each record are hard links:
//     "ip-<IP>-<record>" for each IP it remembers, and "at-<record>" to
//     the reservation of its last ADD when that ADD did not rewrite the
//     record (a restart). A DEL stamps its release on the record's
//     modification time and keeps the reservation's file as a spare for
//     the next new record. An ADD's fsyncs wait for one journal commit.
//   - Concurrency: every operation holds a flock on the directory's lock
//     file against other processes (host-local included) and a mutex
//     within the process.
//   - No two live attachments hold one IP. An attachment (container ID
//     and interface) is live from its ADD until its DEL, or a GC that
//     leaves it out, whether or not its sandbox still runs: only the
//     runtime knows that. An IP is handed out only when no reservation
//     names another attachment, whoever wrote it (host-local included).
//   - Stickiness when free: a pod's record lists the IPs it is remembered
//     by, the one it got first first. A new sandbox of the pod takes the
//     first of them that no attachment holds. One its earlier sandbox
//     still holds (re-created without a DEL: a failed teardown, a reboot
//     the runtime has not cleaned up after) is passed over, the sandbox
//     gets another IP, and the pod stays remembered by both, first by its
//     own: once the earlier sandbox's DEL or GC frees it, the pod's next
//     sandbox gets it back, and the pod is remembered by that one alone
//     again.
//   - Stickiness that never exhausts: a released pod's IPs are passed over
//     for others while other IPs are free, and the oldest of them gives
//     way when none is.
//   - Config changes release nothing: a new subnet, rangeStart or
//     rangeEnd, or a second network name on the same directory, leaves
//     every reservation where it is. One outside the current ranges
//     belongs to a live attachment until its DEL, or a GC that leaves it
//     out; CHECK still finds it; a hint outside them lapses with its TTL.
//     Debian's host-local keeps them too.
//
// An Allocator holds no open file between calls and needs no Close; each
// operation opens, locks and releases the store. Allocate's error for a
// full range matches ErrExhausted; a bad Config is an error from New;
// anything else is the file system's, wrapped with the path.
package ipam
