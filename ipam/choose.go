package ipam

import (
	"fmt"
	"net/netip"
	"slices"
)

// How Allocate chooses: the IPs an attachment holds already, the pod's
// remembered ones, and a fresh one round-robin, giving a hint up when a
// range is otherwise full.

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
