// Package ipam hands out pod IPs from a store on the host-local CNI
// plugin's on-disk layout, and gives a pod restarted under the same
// namespace and name the IPs it had (the second half of field report 002).
//
// What it promises:
//
//   - Compatibility: one file per reserved IP holding
//     "<container ID>\r\n<interface>", a "lock" file both take, and
//     "last_reserved_ip.<i>", so that a node can switch between host-local
//     and weft, either way, without losing a reservation. Pod records live
//     in a subdirectory host-local never takes for a reservation.
//   - Crash safety: a reservation is created exclusively (O_EXCL), written
//     and fsynced under the lock; every other file is replaced atomically
//     (temporary file, fsync, rename, directory fsync). An empty or
//     garbage reservation, left by a writer that died, is reclaimed, never
//     held forever.
//   - Concurrency: every operation holds a flock on the directory's lock
//     file against other processes (host-local included) and a mutex
//     within the process.
//   - Stickiness that never exhausts: a released pod's IPs are passed over
//     for others while other IPs are free, and the oldest of them gives
//     way when none is. A pod never takes another pod's live IP.
package ipam
