package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
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
