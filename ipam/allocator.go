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
	// Now returns the time. Default time.Now.
	Now func() time.Time
}

// An Allocator hands out pod IPs from a host-local-compatible store, and
// gives a pod restarted under the same namespace and name the IPs it had.
// Every method takes the store's lock, so Allocators in any number of
// processes may share one directory.
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
// A repeated call for an attachment that holds IPs returns them. For a pod
// with a record, each range first offers the IP the pod had, if it is in
// the range and free or held by the pod's previous sandbox (a sandbox
// re-created without a DEL, after a reboot); it never takes another pod's
// live IP. Otherwise the range is searched round-robin from its last
// reserved IP, passing over the IPs other pods are remembered by while
// others are free, and taking the oldest remembered one when none is.
// If a later range fails, the IPs this call reserved are released.
//
// Reservations and records outside the current ranges (the node's subnet
// changed) are dropped first.
func (a *Allocator) Allocate(at Attachment, p Pod) ([]IP, error) {
	if at.ContainerID == "" {
		return nil, errors.New("ipam: no container ID")
	}
	if len(a.ranges) == 0 {
		return nil, errNoRanges
	}
	unlock, err := a.s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := a.load()
	if err != nil {
		return nil, err
	}
	var rec *Record
	if p.IsValid() {
		for _, r := range st.records {
			if r.Namespace == p.Namespace && r.Name == p.Name {
				rec = r
			}
		}
	}

	var out []IP
	var made []netip.Addr // reserved by this call, for the rollback
	rollback := func(err error) ([]IP, error) {
		for _, ip := range made {
			a.s.release(ip)
		}
		return nil, err
	}
	for i, r := range a.ranges {
		ip, fresh, err := a.pick(st, i, r, at, p, rec)
		if err != nil {
			return rollback(err)
		}
		if fresh {
			ok, err := a.s.reserve(ip, at)
			if err == nil && !ok {
				err = fmt.Errorf("ipam: %s was taken while the store was locked: is another program writing %s without its lock?", ip, a.s.dir)
			}
			if err != nil {
				return rollback(err)
			}
			made = append(made, ip)
			st.reserved[ip] = at
			if err := a.s.setLastReserved(i, ip); err != nil {
				return rollback(err)
			}
		}
		out = append(out, IP{Address: netip.PrefixFrom(ip, r.Subnet.Bits()), Gateway: r.Gateway})
	}
	if p.IsValid() {
		now := a.now()
		if rec == nil {
			rec = &Record{Namespace: p.Namespace, Name: p.Name, Created: now}
		}
		rec.UID, rec.ContainerID, rec.IfName, rec.Updated, rec.Released = p.UID, at.ContainerID, at.IfName, now, time.Time{}
		rec.IPs = rec.IPs[:0]
		for _, ip := range out {
			rec.IPs = append(rec.IPs, ip.Address.Addr())
		}
		if err := a.s.putRecord(rec); err != nil {
			return rollback(err)
		}
	}
	return out, nil
}

// state is the store as read under the lock.
type state struct {
	reserved map[netip.Addr]Attachment
	records  []*Record
}

// load reads the store, dropping what lies outside the current ranges and
// the hints that have expired.
func (a *Allocator) load() (*state, error) {
	reserved, err := a.s.reservations()
	if err != nil {
		return nil, err
	}
	for ip := range reserved {
		if !a.inRanges(ip) {
			if err := a.s.release(ip); err != nil {
				return nil, err
			}
			delete(reserved, ip)
		}
	}
	records, err := a.s.records()
	if err != nil {
		return nil, err
	}
	now := a.now()
	kept := records[:0]
	for _, r := range records {
		ips := slices.DeleteFunc(slices.Clone(r.IPs), func(ip netip.Addr) bool { return !a.inRanges(ip) })
		if r.Released.IsZero() && !holdsAny(reserved, r) {
			// Its attachment was released (DEL leaves records alone, so
			// that it costs no more than host-local's): the hint's TTL
			// starts now.
			r.Released = now
			if err := a.s.putRecord(r); err != nil {
				return nil, err
			}
		}
		switch {
		case r.expired(now, a.ttl) || len(ips) == 0 && !r.Released.IsZero():
			if err := a.s.deleteRecord(r.pod()); err != nil {
				return nil, err
			}
			continue
		case len(ips) != len(r.IPs):
			r.IPs = ips
			if err := a.s.putRecord(r); err != nil {
				return nil, err
			}
		}
		kept = append(kept, r)
	}
	return &state{reserved: reserved, records: kept}, nil
}

// inRanges reports whether ip lies in a current range; with no ranges
// known (a DEL or GC without the node's subnet), every IP does, so that
// nothing is dropped for want of knowing.
func holdsAny(reserved map[netip.Addr]Attachment, r *Record) bool {
	for _, ip := range r.IPs {
		if h, ok := reserved[ip]; ok && h.ContainerID == r.ContainerID && h.IfName == r.IfName {
			return true
		}
	}
	return false
}

func (a *Allocator) inRanges(ip netip.Addr) bool {
	if len(a.ranges) == 0 {
		return true
	}
	for _, r := range a.ranges {
		if r.contains(ip) {
			return true
		}
	}
	return false
}

// pick chooses range i's IP for at: fresh is false when at already holds
// it. See Allocate for the order of preference.
func (a *Allocator) pick(st *state, i int, r Range, at Attachment, p Pod, rec *Record) (ip netip.Addr, fresh bool, err error) {
	for ip, holder := range st.reserved {
		if holder == at && r.contains(ip) {
			return ip, false, nil
		}
	}
	if rec != nil {
		for _, ip := range rec.IPs {
			if !r.contains(ip) {
				continue
			}
			holder, taken := st.reserved[ip]
			switch {
			case !taken:
				return ip, true, nil
			case holder.ContainerID == rec.ContainerID && holder.IfName == rec.IfName:
				// The pod's previous sandbox, gone without a DEL: the
				// reservation moves to the new one.
				if err := a.s.release(ip); err != nil {
					return netip.Addr{}, false, err
				}
				delete(st.reserved, ip)
				return ip, true, nil
			}
		}
	}

	// Round-robin, passing over other pods' remembered IPs. Among the
	// candidates, at most len(reserved)+len(hinted) are unusable, so a
	// scan of one more than that finds a free, unremembered one if there
	// is any, even in a range too large to scan whole.
	hinted := map[netip.Addr]*Record{}
	for _, other := range st.records {
		if p.IsValid() && other.Namespace == p.Namespace && other.Name == p.Name {
			continue
		}
		for _, ip := range other.IPs {
			if r.contains(ip) {
				hinted[ip] = other
			}
		}
	}
	limit := min(r.size(), uint64(len(st.reserved)+len(hinted))+1)
	var oldest netip.Addr
	ip = a.s.lastReserved(i)
	for n := uint64(0); n < limit; {
		ip = r.next(ip)
		if ip == r.Gateway {
			continue
		}
		n++
		if _, taken := st.reserved[ip]; taken {
			continue
		}
		h, remembered := hinted[ip]
		if !remembered {
			return ip, true, nil
		}
		if !oldest.IsValid() || h.since().Before(hinted[oldest].since()) {
			oldest = ip
		}
	}
	if oldest.IsValid() {
		// Every free IP is remembered for another pod: the oldest hint
		// gives way, so that stickiness never exhausts a range.
		h := hinted[oldest]
		h.IPs = slices.DeleteFunc(h.IPs, func(ip netip.Addr) bool { return ip == oldest })
		if err := a.s.putRecord(h); err != nil {
			return netip.Addr{}, false, err
		}
		return oldest, true, nil
	}
	return netip.Addr{}, false, fmt.Errorf("ipam: %w in range %s", ErrExhausted, r.Subnet)
}

// Release frees the IPs attachment at holds. The pod's record stays, so
// its next sandbox gets the same IPs back within the hint TTL, which
// starts when the store is next read (Release itself touches only the
// reservations, as host-local's DEL does). Nothing held is not an error.
func (a *Allocator) Release(at Attachment) error {
	unlock, err := a.s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	reserved, err := a.s.reservations()
	if err != nil {
		return err
	}
	for ip, holder := range reserved {
		if holder == at || holder.ContainerID == at.ContainerID && holder.IfName == "" {
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
	}
	st, err := a.load()
	if err != nil {
		return 0, err
	}
	released := 0
	for ip, holder := range st.reserved {
		if keep[holder] || holder.IfName == "" && keepsContainer(valid, holder.ContainerID) {
			continue
		}
		if err := a.s.release(ip); err != nil {
			return released, err
		}
		released++
	}
	return released, nil
}

func keepsContainer(valid []Attachment, id string) bool {
	return slices.ContainsFunc(valid, func(at Attachment) bool { return at.ContainerID == id })
}

// Lookup returns the IPs attachment at holds, in range order, for CNI's
// CHECK.
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
	var out []IP
	for _, r := range a.ranges {
		for ip, holder := range reserved {
			if holder == at && r.contains(ip) {
				out = append(out, IP{Address: netip.PrefixFrom(ip, r.Subnet.Bits()), Gateway: r.Gateway})
			}
		}
	}
	return out, nil
}

// Usage is how full each range is.
type Usage struct {
	Range     Range
	Size      uint64 // addresses the range hands out, at most MaxUint64
	Reserved  int
	Remembers int // free addresses remembered for a released pod
}

// Free returns the addresses left, counting remembered ones as free (a
// hint gives way when it must).
func (u Usage) Free() uint64 { return u.Size - uint64(u.Reserved) }

// Usage reports each range's use, for CNI's STATUS.
func (a *Allocator) Usage() ([]Usage, error) {
	unlock, err := a.s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if len(a.ranges) == 0 {
		return nil, errNoRanges
	}
	st, err := a.load()
	if err != nil {
		return nil, err
	}
	var out []Usage
	for _, r := range a.ranges {
		u := Usage{Range: r, Size: r.size()}
		for ip := range st.reserved {
			if r.contains(ip) {
				u.Reserved++
			}
		}
		for _, rec := range st.records {
			if rec.Released.IsZero() {
				continue
			}
			for _, ip := range rec.IPs {
				if _, taken := st.reserved[ip]; !taken && r.contains(ip) {
					u.Remembers++
				}
			}
		}
		out = append(out, u)
	}
	return out, nil
}
