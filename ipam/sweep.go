package ipam

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
)

// lockInRanges takes the store's lock for a call that needs the ranges,
// and first sweeps the store if an hour has passed since the last sweep
// (see sweepIfDue). It returns the unlock.
func (a *Allocator) lockInRanges() (unlock func(), err error) {
	if len(a.ranges) == 0 {
		return nil, errNoRanges
	}
	if unlock, err = a.s.lock(); err != nil {
		return nil, err
	}
	if err := a.sweepIfDue(); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// sweptFile's modification time is when the store was last swept. It
// holds the ranges of that sweep, for an operator's eye only: the ranges
// are not a reason to sweep, since two network names may share the
// directory with different ranges, and sweeping on every change would
// make every ADD read the whole store. Its name is the one weft has
// always used.
const sweptFile = "ranges"

// sweepIfDue sweeps the store when the last sweep is older than the hint
// TTL or an hour, whichever is shorter.
func (a *Allocator) sweepIfDue() error {
	path := filepath.Join(a.s.dir, recordDir, sweptFile)
	_, swept, err := readFileAndTime(path)
	if err == nil && time.Since(swept) < min(a.ttl, maxSweepInterval) {
		return nil
	}
	// Expired hints and debris go, and the records of pods released
	// without the pod known start their TTL.
	if _, err := a.sweep(nil); err != nil {
		return err
	}
	var parts []string
	for _, r := range a.ranges {
		parts = append(parts, fmt.Sprintf("%s %s %s %s", r.Subnet, r.Start, r.End, r.Gateway))
	}
	return atomicfile.Write(path, []byte(strings.Join(parts, "\n")), 0o644)
}

// maxSweepInterval bounds how long an Allocate goes without sweeping the
// store (sweptFile's time says when it last did).
const maxSweepInterval = time.Hour

// sweep reads the whole store: when valid is not nil, it releases the
// reservations of attachments not in it; it drops hints that expired,
// starts the TTL of records whose attachment no longer holds their IPs,
// and repairs markers. It returns how many reservations it released.
//
// Nothing is released or forgotten for lying outside the current ranges:
// a reservation there is a live pod's (a DEL or GC frees it), and a hint
// there costs nothing, is never offered, and lapses with its TTL; the
// ranges may also be only one of the networks sharing the directory.
func (a *Allocator) sweep(valid map[Attachment]bool) (int, error) {
	reserved, err := a.s.reservations()
	if err != nil {
		return 0, err
	}
	released := 0
	for ip, h := range reserved {
		if valid != nil && !valid[h] && (h.IfName != "" || !valid[Attachment{ContainerID: h.ContainerID, IfName: "*"}]) {
			if err := a.s.release(ip); err != nil {
				return released, err
			}
			delete(reserved, ip)
			released++
		}
	}
	records, err := a.s.records()
	if err != nil {
		return released, err
	}
	now := a.now()
	kept := make(map[string]*podRecord, len(records)) // by file name
	for _, r := range records {
		next := *r
		holds := false
		for _, ip := range next.IPs {
			holds = holds || reserved[ip] == r.attachment()
		}
		switch {
		case !holds && next.Released.IsZero():
			next.Released = now
		case holds:
			next.Released = time.Time{} // live again
		}
		switch {
		case next.expired(now, a.ttl) || len(next.IPs) == 0 && !holds:
			err = a.s.deleteRecord(r)
		case !next.Released.Equal(r.Released):
			err = a.s.putRecord(&next, r)
			kept[recordName(r.pod())] = &next
		default:
			err = a.s.syncMarkers(r, nil)
			kept[recordName(r.pod())] = r
		}
		if err != nil {
			return released, err
		}
	}
	return released, a.s.pruneLinks(kept)
}

// GC releases every reservation whose attachment is not in valid (CNI's
// GC, or a daemon reconciling with the sandboxes it knows), drops hints
// that have expired, and returns how many reservations it released.
func (a *Allocator) GC(valid []Attachment) (int, error) {
	unlock, err := a.s.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	keep := map[Attachment]bool{}
	for _, at := range valid {
		keep[at] = true
		// A reservation host-local wrote before it recorded interfaces
		// names only the container.
		keep[Attachment{ContainerID: at.ContainerID, IfName: "*"}] = true
	}
	return a.sweep(keep)
}
