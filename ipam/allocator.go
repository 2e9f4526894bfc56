package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
)

// DefaultHintTTL is how long a released pod's IPs stay reserved for its
// next sandbox, by default.
const DefaultHintTTL = 24 * time.Hour

var errNoRanges = errors.New("ipam: no address ranges: set ranges, or a subnet file with FLANNEL_SUBNET")

// ErrExhausted is matched by the error Allocate returns when a range has no
// address left.
var ErrExhausted = errors.New("no IP addresses available")

// Config configures an Allocator.
type Config struct {
	// Dir is the network's directory: <dataDir>/<network name>, by
	// default /var/lib/cni/networks/<name>, as host-local's. Required.
	Dir string
	// Ranges are the address ranges, at most one per family, in the order
	// results list them. Allocate and Usage need at least one; Release,
	// GC and Lookup work without, so that a DEL succeeds even when the
	// node's subnet can no longer be read.
	Ranges []Range
	// HintTTL is how long after its pod released them a pod's IPs are kept
	// for it. Default DefaultHintTTL. A hint never causes exhaustion: when
	// a range is otherwise full, the oldest hint is given up.
	HintTTL time.Duration
	// Now returns the time. Default time.Now, in UTC.
	Now func() time.Time
}

// An Allocator hands out pod IPs from a host-local-compatible store, and
// gives a pod restarted under the same namespace and name the IPs it had.
// Every method takes the store's lock, so Allocators in any number of
// processes may share one directory.
//
// The common operations cost a few small files whatever the number of
// reservations: which IPs are taken, and which are remembered for a pod,
// are names in two directory listings; only the pod's own record and the
// files of the IPs it looks at are read.
type Allocator struct {
	s      *store
	ranges []Range
	ttl    time.Duration
	now    func() time.Time
}

// New checks cfg and opens the store, creating its directory if needed.
func New(cfg Config) (*Allocator, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ipam: Config.Dir is required")
	}
	a := &Allocator{ttl: cfg.HintTTL, now: cfg.Now}
	if a.ttl <= 0 {
		a.ttl = DefaultHintTTL
	}
	if a.now == nil {
		// UTC: records need no time zone, and loading one costs every
		// plugin run a file read.
		a.now = func() time.Time { return time.Now().UTC() }
	}
	families := map[bool]bool{}
	for _, r := range cfg.Ranges {
		r, err := r.withDefaults()
		if err != nil {
			return nil, err
		}
		if families[r.Subnet.Addr().Is6()] {
			return nil, fmt.Errorf("ipam: two ranges of one family (%s): give one per family", r.Subnet)
		}
		families[r.Subnet.Addr().Is6()] = true
		a.ranges = append(a.ranges, r)
	}
	s, err := openStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	a.s = s
	return a, nil
}

// An IP is one address handed out, with its range's subnet and gateway.
type IP struct {
	Address netip.Prefix // the IP with the subnet's length
	Gateway netip.Addr
}

// Allocate reserves one IP per range for attachment at, of pod p (the zero
// Pod if unknown), and returns them in range order.
//
// No IP is ever given to at while another attachment holds it: a
// reservation naming another container ID or interface is live until its
// DEL (Release) or a GC that leaves it out, whether or not its sandbox
// still runs, since only the runtime knows that.
//
// A repeated call for an attachment that holds IPs returns them. For a pod
// with a record, each range first offers the pod's remembered IPs, in the
// order the record lists them (the IP the pod got first comes first), and
// takes the first that no attachment holds. One that another attachment
// holds (a sandbox of the pod's that was not DELeted: a runtime re-creating
// a sandbox whose teardown failed) is passed over and stays remembered, so
// that once its holder's DEL or GC frees it the pod's next sandbox gets it
// again. Otherwise the range is searched round-robin from its last
// reserved IP, passing over the IPs other pods are remembered by while
// others are free, and taking the oldest remembered one (the first in
// round-robin order: the one handed out longest ago) when none is; the
// pod remembers that IP after those it waits for.
// If a later range fails, the IPs this call reserved are released.
//
// A change of the ranges (the node's subnet moved, a new rangeStart or
// rangeEnd, a second network name sharing the directory) releases nothing:
// a reservation outside the current ranges belongs to a live attachment
// until its DEL, or until a GC leaves it out, as with host-local.
func (a *Allocator) Allocate(at Attachment, p Pod) ([]IP, error) {
	if at.ContainerID == "" {
		return nil, errors.New("ipam: no container ID")
	}
	unlock, err := a.lockInRanges()
	if err != nil {
		return nil, err
	}
	defer unlock()
	taken, marked, spares, err := a.names()
	if err != nil {
		return nil, err
	}
	var rec *podRecord
	var recFile bool // a file, readable or not
	if p.IsValid() {
		if rec, recFile, err = a.s.recordFile(p); err != nil {
			return nil, err
		}
	}
	held, err := a.held(at, p, rec, recFile, taken)
	if err != nil {
		return nil, err
	}

	// Choose first, then write the pod's record, then reserve: the
	// record is the intent, so that an ADD killed after it and retried
	// finds its choice again instead of reserving a second IP.
	// Nothing is changed until every range has its IP: a range that
	// fails leaves the store as it was.
	chosen := make([]netip.Addr, len(a.ranges))
	var choices []choice
	for i, r := range a.ranges {
		if ip := held[i]; ip.IsValid() {
			chosen[i] = ip
			continue
		}
		c, err := a.pick(i, r, rec, at, p, taken, marked)
		if err != nil {
			return nil, err
		}
		chosen[i] = c.ip
		taken[c.ip] = true
		choices = append(choices, c)
	}
	// What the pod is remembered by from now on.
	var remember []netip.Addr
	if p.IsValid() {
		if remember, err = a.remembered(rec, at, chosen, taken); err != nil {
			return nil, err
		}
	}
	// What applying the choices changed, undone if the ADD fails.
	var undo []func()
	latest := map[string]*podRecord{} // evicted records as rewritten, by name
	for _, c := range choices {
		if err := a.apply(c, latest, &undo); err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
			return nil, err
		}
	}
	// A pod that gets the IPs its record lists, under the same UID (a
	// restart, the common case), keeps its record: only the attachment
	// changes, and that is recorded below by a hard link to the
	// reservation, where a rewrite would cost a new file and a second
	// journal commit (its temporary file must be durable before its
	// rename). Any other pod's record is written first, as the intent.
	keep := p.IsValid() && rec != nil && rec.UID == p.UID && slices.Equal(remember, rec.IPs) && rec.releaseOnlyStamped()
	// The files are written in that order, and then made durable
	// together, in one commit of the file system's journal.
	var batch syncBatch
	var made []netip.Addr // reserved by this call, for the rollback
	fail := func(err error) ([]IP, error) {
		batch.abort()
		for _, ip := range made {
			a.s.release(ip)
		}
		if keep {
			a.s.removeAttachment(p) // the restored record names the attachment
		}
		a.restoreRecord(p, rec)
		for _, f := range slices.Backward(undo) {
			f()
		}
		return nil, err
	}
	if p.IsValid() && !keep {
		now := a.now()
		next := &podRecord{Namespace: p.Namespace, Name: p.Name, UID: p.UID, Created: now,
			ContainerID: at.ContainerID, IfName: at.IfName, Updated: now, IPs: remember}
		if rec != nil {
			next.Created = rec.Created
		}
		if err := a.s.putRecordBatch(&batch, next, rec, spares); err != nil {
			return fail(err)
		}
		a.s.removeAttachment(p) // the record names the attachment now
	}
	for i, ip := range chosen {
		if ip == held[i] {
			continue
		}
		ok, err := a.s.reserve(&batch, ip, at)
		if err == nil && !ok {
			err = fmt.Errorf("ipam: %s was taken while the store was locked: is another program writing %s without its lock?", ip, a.s.dir)
		}
		if err != nil {
			return fail(err)
		}
		made = append(made, ip)
		if err := a.s.setLastReserved(i, ip); err != nil {
			return fail(err)
		}
	}
	if keep {
		// Markers a kill left missing, which no rewrite repairs here.
		if err := a.s.linkMissingMarkers(rec, marked); err != nil {
			return fail(err)
		}
		if err := a.s.setAttachment(&batch, p, chosen[0]); err != nil {
			return fail(err)
		}
		if err := a.s.markLive(rec); err != nil {
			return fail(err)
		}
	}
	if err := batch.sync(); err != nil {
		return fail(err)
	}
	out := make([]IP, len(chosen))
	for i, ip := range chosen {
		out[i] = IP{Address: netip.PrefixFrom(ip, a.ranges[i].Subnet.Bits()), Gateway: a.ranges[i].Gateway}
	}
	return out, nil
}

// restoreRecord puts p's record back as it was before a failed Allocate,
// so that the pod is remembered by the IPs it had.
func (a *Allocator) restoreRecord(p Pod, old *podRecord) {
	if !p.IsValid() {
		return
	}
	cur, err := a.s.record(p)
	if err != nil || cur == nil {
		return
	}
	if old == nil {
		a.s.deleteRecord(cur)
		return
	}
	a.s.putRecord(old, cur)
}

// names lists the taken IPs and the remembered ones: two directory
// listings, no file read.
func (a *Allocator) names() (taken map[netip.Addr]bool, marked map[netip.Addr][]string, spares []string, err error) {
	if taken, err = a.s.taken(); err != nil {
		return nil, nil, nil, err
	}
	if marked, spares, err = a.s.index(); err != nil {
		return nil, nil, nil, err
	}
	return taken, marked, spares, nil
}

// held returns, per range, the IP attachment at already holds, if any:
// through the pod's record when it names at (a repeated ADD, or one
// retried after a crash: the record is written before the reservations),
// else, for an ADD without a pod, by reading every reservation, as
// host-local does.
func (a *Allocator) held(at Attachment, p Pod, rec *podRecord, recFile bool, taken map[netip.Addr]bool) ([]netip.Addr, error) {
	out := make([]netip.Addr, len(a.ranges))
	var candidates []netip.Addr
	switch {
	case rec != nil && (rec.attachment() == at || rec.ContainerID != at.ContainerID):
		// The pod's own IPs: at holds them after a repeated ADD, or
		// after one cut short before it recorded at as the attachment.
		candidates = rec.IPs
	case !p.IsValid() || recFile:
		// No pod; or another interface of the same container (the
		// record names one attachment); or a record that cannot be read:
		// find at's reservations the slow way.
		reserved, err := a.s.reservations()
		if err != nil {
			return nil, err
		}
		for ip, h := range reserved {
			if h == at {
				candidates = append(candidates, ip)
			}
		}
	}
	for _, ip := range candidates {
		if !taken[ip] {
			continue
		}
		h, ok, err := a.s.holder(ip)
		if err != nil {
			return nil, err
		}
		if !ok {
			delete(taken, ip) // reclaimed debris
			continue
		}
		for i, r := range a.ranges {
			if h == at && r.contains(ip) {
				out[i] = ip
			}
		}
	}
	return out, nil
}

// remembered returns the IPs the pod of record rec is remembered by once
// at holds chosen: the record's, in its order, that at now holds or another
// attachment holds (the pod waits for them: the holder is live until its
// DEL or a GC), then those of chosen it did not list. An IP it listed that
// is free and not chosen is forgotten: the pod took an earlier one, or its
// hint expired. A pod whose sandboxes all got their DEL is so remembered
// by one IP per range again after its next ADD.
func (a *Allocator) remembered(rec *podRecord, at Attachment, chosen []netip.Addr, taken map[netip.Addr]bool) ([]netip.Addr, error) {
	var out []netip.Addr
	if rec != nil {
		for _, ip := range rec.IPs {
			if slices.Contains(chosen, ip) {
				out = append(out, ip)
				continue
			}
			if !taken[ip] {
				continue
			}
			h, ok, err := a.s.holder(ip)
			if err != nil {
				return nil, err
			}
			if ok && h != at {
				out = append(out, ip)
			}
		}
	}
	for _, ip := range chosen {
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}

// A choice is an IP pick chose and what taking it involves, applied only
// once every range has an IP, so that a failed ADD changes nothing.
type choice struct {
	ip    netip.Addr
	evict []*podRecord // remove ip from these hints
}

// pick chooses a fresh IP of range i. See Allocate for the order of
// preference.
func (a *Allocator) pick(i int, r Range, rec *podRecord, at Attachment, p Pod, taken map[netip.Addr]bool, marked map[netip.Addr][]string) (choice, error) {
	if rec != nil && !rec.expired(a.now(), a.ttl) {
		// The pod's IPs, in its order. One held by any attachment is
		// passed over: held() found at's own, so the holder is another,
		// live until its DEL or a GC.
		for _, ip := range rec.IPs {
			if !r.contains(ip) {
				continue
			}
			if !taken[ip] {
				return choice{ip: ip}, nil
			}
			_, ok, err := a.s.holder(ip)
			if err != nil {
				return choice{}, err
			}
			if !ok {
				delete(taken, ip) // debris, reclaimed
				return choice{ip: ip}, nil
			}
		}
	}

	// Round-robin, passing over other pods' remembered IPs: by names
	// alone, no file read. At most len(taken)+len(marked) candidates are
	// unusable, so a scan of one more than that finds a free,
	// unremembered one if there is any, even in a range too large to scan
	// whole.
	limit := min(r.size(), uint64(len(taken)+len(marked))+1)
	ip := a.s.lastReserved(i)
	var remembered []netip.Addr // free but remembered, in round-robin order
	for n := uint64(0); n < limit; {
		ip = r.next(ip)
		if ip == r.Gateway {
			continue
		}
		n++
		switch {
		case taken[ip]:
		case len(marked[ip]) == 0:
			return choice{ip: ip}, nil
		default:
			remembered = append(remembered, ip)
		}
	}
	// Every free IP is remembered. The first in round-robin order is the
	// one handed out longest ago, the oldest hint: unless its marker is
	// stale, or its hint expired or is this pod's own, it gives way, so
	// that stickiness never exhausts a range. One record is read.
	if len(remembered) > 0 {
		ip := remembered[0]
		h, err := a.hints(ip, p, marked[ip])
		if err != nil {
			return choice{}, err
		}
		return choice{ip: ip, evict: h}, nil
	}
	// Full, by names: reclaim debris, if any, the slow way.
	reserved, err := a.s.reservations()
	if err != nil {
		return choice{}, err
	}
	for ip := range taken {
		if _, ok := reserved[ip]; !ok && r.contains(ip) {
			delete(taken, ip)
			h, err := a.hints(ip, p, marked[ip])
			if err != nil {
				return choice{}, err
			}
			return choice{ip: ip, evict: h}, nil
		}
	}
	return choice{}, fmt.Errorf("ipam: %w in range %s", ErrExhausted, r.Subnet)
}

// apply carries out what taking c involves, adding to undo how to take
// it back. latest holds the records evicted so far, as rewritten: two
// ranges may evict two IPs of one record.
func (a *Allocator) apply(c choice, latest map[string]*podRecord, undo *[]func()) error {
	for _, h := range c.evict {
		name := recordName(h.pod())
		cur := h
		if l := latest[name]; l != nil {
			cur = l
		}
		next := *cur
		next.IPs = slices.DeleteFunc(slices.Clone(cur.IPs), func(x netip.Addr) bool { return x == c.ip })
		if err := a.s.putRecord(&next, cur); err != nil {
			return err
		}
		latest[name] = &next
		*undo = append(*undo, func() { a.s.putRecord(cur, &next) })
	}
	return nil
}

// hints returns the records that remember free IP ip for other pods than
// p, of those its markers name (records). Expired ones are deleted on the
// way.
func (a *Allocator) hints(ip netip.Addr, p Pod, records []string) ([]*podRecord, error) {
	all, err := a.s.hintsFor(ip, records)
	if err != nil {
		return nil, err
	}
	var out []*podRecord
	for _, h := range all {
		if p.IsValid() && h.Namespace == p.Namespace && h.Name == p.Name {
			continue
		}
		if h.Released.IsZero() {
			holds, err := a.holdsAny(h)
			if err != nil {
				return nil, err
			}
			if holds {
				out = append(out, h) // a live pod, missing this IP (an ADD cut short)
				continue
			}
			// Its release was not seen: the TTL starts now.
			h.Released = a.now()
			if err := a.s.putRecord(h, h); err != nil {
				return nil, err
			}
		}
		if h.expired(a.now(), a.ttl) {
			if err := a.s.deleteRecord(h); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, h)
	}
	return out, nil
}

// holdsAny reports whether r's attachment holds any of r's IPs.
func (a *Allocator) holdsAny(r *podRecord) (bool, error) {
	for _, ip := range r.IPs {
		h, ok, err := a.s.holder(ip)
		if err != nil {
			return false, err
		}
		if ok && h == r.attachment() {
			return true, nil
		}
	}
	return false, nil
}

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

// Release frees the IPs attachment at holds. With the pod p known, it
// looks only at the IPs the pod's record names; otherwise, or if they do
// not match, it reads every reservation, as host-local's DEL does. The
// pod's record stays, so its next sandbox gets the same IPs back within
// the hint TTL, which starts now (or, without the pod, when the store
// next sees its IPs free). Nothing held is not an error.
func (a *Allocator) Release(at Attachment, p Pod) error {
	unlock, err := a.s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if p.IsValid() {
		rec, err := a.s.record(p)
		if err != nil {
			return err
		}
		if rec != nil && rec.attachment() == at {
			for _, ip := range rec.IPs {
				if h, ok, err := a.s.holder(ip); err != nil {
					return err
				} else if ok && h == at {
					if err := a.s.release(ip); err != nil {
						return err
					}
				}
			}
			// The hint's TTL starts now.
			return a.s.markReleased(rec, a.now())
		}
	}
	reserved, err := a.s.reservations()
	if err != nil {
		return err
	}
	for ip, h := range reserved {
		if h == at || h.ContainerID == at.ContainerID && h.IfName == "" {
			if err := a.s.release(ip); err != nil {
				return err
			}
		}
	}
	return nil
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

// Lookup returns the IPs attachment at holds, for CNI's CHECK: those in
// the ranges first, in range order, with their subnet's length and
// gateway, then any held outside them (reserved under earlier ranges, or
// by a network sharing the directory) as single addresses. As with
// host-local, holding any IP is holding one.
func (a *Allocator) Lookup(at Attachment) ([]IP, error) {
	unlock, err := a.s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	reserved, err := a.s.reservations()
	if err != nil {
		return nil, err
	}
	var out, outside []IP
	for ip, h := range reserved {
		if h != at {
			continue
		}
		i := slices.IndexFunc(a.ranges, func(r Range) bool { return r.contains(ip) })
		if i < 0 {
			outside = append(outside, IP{Address: netip.PrefixFrom(ip, ip.BitLen())})
			continue
		}
		out = append(out, IP{Address: netip.PrefixFrom(ip, a.ranges[i].Subnet.Bits()), Gateway: a.ranges[i].Gateway})
	}
	rangeOf := func(ip IP) int {
		return slices.IndexFunc(a.ranges, func(r Range) bool { return r.contains(ip.Address.Addr()) })
	}
	slices.SortFunc(out, func(x, y IP) int { return rangeOf(x) - rangeOf(y) })
	slices.SortFunc(outside, func(x, y IP) int { return x.Address.Addr().Compare(y.Address.Addr()) })
	return append(out, outside...), nil
}

// Usage is how full a range is.
type Usage struct {
	Range     Range
	Size      uint64 // addresses the range hands out, at most MaxUint64
	Reserved  int
	Remembers int // free addresses remembered for a pod
}

// Free returns the addresses left, counting remembered ones as free (a
// hint gives way when it must).
func (u Usage) Free() uint64 { return u.Size - uint64(u.Reserved) }

// Usage reports each range's use, for CNI's STATUS. Runtimes call that
// every few seconds, so it reads two directory listings; like Allocate, it
// sweeps the store only when the ranges changed or an hour has passed.
func (a *Allocator) Usage() ([]Usage, error) {
	unlock, err := a.lockInRanges()
	if err != nil {
		return nil, err
	}
	defer unlock()
	taken, marked, _, err := a.names()
	if err != nil {
		return nil, err
	}
	var out []Usage
	for _, r := range a.ranges {
		u := Usage{Range: r, Size: r.size()}
		for ip := range taken {
			if r.contains(ip) {
				u.Reserved++
			}
		}
		for ip := range marked {
			if !taken[ip] && r.contains(ip) {
				u.Remembers++
			}
		}
		out = append(out, u)
	}
	return out, nil
}
