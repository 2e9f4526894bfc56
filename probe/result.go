//go:build linux

package probe

import (
	"net/netip"
	"time"
)

// A State is what a peer's last probe found.
type State string

// The States. Reachable and MTUBlackHole answer the small probe; the
// other three do not, and differ by what the underlay check found.
const (
	// StateReachable: the small probe was answered, and so was the
	// full-size one when the path was last checked.
	StateReachable State = "reachable"
	// StateMTUBlackHole: small probes are answered, full-size ones (the
	// device's MTU, DF set) are lost: the path carries less than the
	// overlay needs, and large transfers stall.
	StateMTUBlackHole State = "mtu-black-hole"
	// StateOverlayDown: no reply over the overlay, but the underlay
	// reaches the peer: its VXLAN port is dropped on the path or at the
	// peer, or the peer's datapath is wrong.
	StateOverlayDown State = "overlay-down"
	// StateUnderlayDown: no reply over the overlay nor over the underlay.
	StateUnderlayDown State = "underlay-down"
	// StateUnreachable: no reply over the overlay; the underlay was not
	// checked (the peer names no public IP, or the check could not be
	// sent).
	StateUnreachable State = "unreachable"
)

// A Result is the outcome of a peer's last probe.
type Result struct {
	Time      time.Time     // when the probe started
	Reachable bool          // a reply came back over the overlay to the small probe
	RTT       time.Duration // the round trip of the first reply
	Sent      int           // small echo requests sent
	Err       string        // why the peer is unreachable: no reply, or the send's error
	// Since is when the peer's State last changed: the time of its first
	// probe with this State.
	Since time.Time
	// State says what the probe found, Diagnosis (empty when
	// StateReachable) what it means and the fix, in one line.
	State     State
	Diagnosis string
	// PathMTU is the peer's path as last checked at full size; nil
	// before the first check.
	PathMTU *PathMTU
	// Underlay is the check of the peer's public address when the overlay
	// did not answer; nil otherwise.
	Underlay *Underlay
}

// PathMTU is what the full-size probes found of a peer's path, in
// overlay packet sizes (the device's MTU is the largest).
type PathMTU struct {
	Checked   time.Time // the last full-size probe
	DeviceMTU int       // the size the overlay must carry
	Overhead  int       // what the datapath adds on the underlay
	// OK: the full size was answered at the last check. Otherwise
	// Carries is the largest size known to pass, Drops the smallest
	// known lost, and Exact says they are one apart: the search is over.
	OK      bool
	Carries int
	Drops   int
	Exact   bool
}

// Need is the underlay packet size the overlay needs: DeviceMTU plus
// Overhead.
func (m PathMTU) Need() int { return m.DeviceMTU + m.Overhead }

// Path is the largest underlay packet the path is known to carry.
func (m PathMTU) Path() int { return m.Carries + m.Overhead }

// Underlay is the check of a peer's public address.
type Underlay struct {
	Time      time.Time
	Reachable bool
	// By is what answered ("icmp echo", "tcp/10250 refused"), or what was
	// tried when nothing did.
	By  string
	Err string // why it counts as unreachable
}

// Counts aggregates the last results of the current peers.
type Counts struct {
	Reachable   int // the small probe answered, MTU black holes included
	Unreachable int
	Unprobed    int // peers not probed yet
	// MTUBlackHoles are the reachable peers whose path drops full-size
	// packets.
	MTUBlackHoles int
	// Of the unreachable: those whose underlay answers, and those whose
	// underlay does not (the rest were not checked).
	UnderlayReachable   int
	UnderlayUnreachable int
}

// peerState is what the Prober keeps of one peer between probes.
type peerState struct {
	last Result
	path pathState
	// announced is the state last logged, "" before any: each change is
	// logged once. announcedPath is the size a black hole was announced
	// with, so that a path whose size changes is logged once per size.
	announced     State
	announcedPath int
	// seen is the last round whose targets named the peer.
	seen uint64
}

// record keeps r as t's last result, logs a change of state, and returns
// r with Since set.
func (p *Prober) record(t Target, r Result) Result {
	p.mu.Lock()
	ps, had := p.peerOf[t.Subnet]
	if !had {
		ps = &peerState{}
		p.peerOf[t.Subnet] = ps
	}
	prev := ps.last
	r.Since = r.Time
	if had && prev.State == r.State {
		r.Since = prev.Since
	}
	ps.last = r
	// A black hole is announced once its size is known, so that the one
	// line names the figures and the fix; until then it counts as
	// reachable, as the small probe is answered. One announced stays so
	// while its path's size is searched again (the path changed): it is
	// not carrying full-size packets, and the new size gets its own line.
	say := r.State
	was := ps.announced
	if say == StateMTUBlackHole && (r.PathMTU == nil || !r.PathMTU.Exact) {
		say = StateReachable
		if was == StateMTUBlackHole {
			say = was
		}
	}
	resized := say == StateMTUBlackHole && was == say && r.PathMTU.Exact && r.PathMTU.Carries != ps.announcedPath
	if say == StateMTUBlackHole && r.PathMTU.Exact {
		ps.announcedPath = r.PathMTU.Carries
	}
	if say != was && (was != "" || say != StateReachable) {
		ps.announced = say
	} else if !resized {
		was = say // nothing to log
	}
	p.mu.Unlock()
	if say != was || resized {
		p.logChange(t, r, was, say, prev)
	}
	if p.cfg.OnResult != nil {
		p.cfg.OnResult(t, r)
	}
	return r
}

// logChange logs a peer's change of state from was to now.
func (p *Prober) logChange(t Target, r Result, was, now State, prev Result) {
	attrs := []any{"subnet", t.Subnet, "vtep", t.Addr, "public_ip", t.PublicIP, "node", t.Node}
	down := func(s State) bool { return s != StateReachable && s != StateMTUBlackHole && s != "" }
	switch {
	case down(now) && down(was):
		p.log.Warn("peer still unreachable over the overlay; its underlay check changed", append(attrs, "state", now, "diagnosis", r.Diagnosis)...)
	case down(now):
		p.log.Warn("peer unreachable over the overlay", append(attrs, "state", now, "err", r.Err, "diagnosis", r.Diagnosis)...)
	case now == StateMTUBlackHole:
		p.log.Warn("path MTU black hole", append(attrs, "path", r.PathMTU.Path(), "need", r.PathMTU.Need(), "diagnosis", r.Diagnosis)...)
	case was == StateMTUBlackHole:
		p.log.Info("path to peer carries full-size packets again", attrs...)
	default:
		p.log.Info("peer reachable over the overlay again", append(attrs, "rtt", r.RTT, "unreachable_for", r.Time.Sub(prev.Since).Round(time.Millisecond))...)
	}
}

// Result returns the last probe of the peer at subnet.
func (p *Prober) Result(subnet netip.Prefix) (Result, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps, ok := p.peerOf[subnet]
	if !ok {
		return Result{}, false
	}
	return ps.last, true
}

// Results returns the last probe of every peer probed, by subnet.
func (p *Prober) Results() map[netip.Prefix]Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[netip.Prefix]Result, len(p.peerOf))
	for s, ps := range p.peerOf {
		out[s] = ps.last
	}
	return out
}

// Unreachable returns the subnets of the peers whose last probe got no
// reply over the overlay.
func (p *Prober) Unreachable() []netip.Prefix {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.Prefix
	for s, ps := range p.peerOf {
		if !ps.last.Reachable {
			out = append(out, s)
		}
	}
	return out
}

// Failing returns the subnets of the peers whose last probe found
// anything but StateReachable: the unreachable and the MTU black holes.
func (p *Prober) Failing() []netip.Prefix {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.Prefix
	for s, ps := range p.peerOf {
		if ps.last.State != StateReachable {
			out = append(out, s)
		}
	}
	return out
}

// Counts aggregates the last results of the peers of the last round:
// those of peers gone since are forgotten at the next one.
func (p *Prober) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	var c Counts
	for _, ps := range p.peerOf {
		switch ps.last.State {
		case StateReachable:
			c.Reachable++
		case StateMTUBlackHole:
			c.Reachable++
			c.MTUBlackHoles++
		case StateOverlayDown:
			c.Unreachable++
			c.UnderlayReachable++
		case StateUnderlayDown:
			c.Unreachable++
			c.UnderlayUnreachable++
		default:
			c.Unreachable++
		}
	}
	c.Unprobed = max(0, p.peers-c.Reachable-c.Unreachable)
	return c
}

// Kinds of what a Prober sends, for Sent.
const (
	KindSmall    = iota // a small echo over the overlay
	KindFull            // an echo of a path MTU check: the device's MTU or a size searched
	KindUnderlay        // an echo to a peer's public address
	KindTCP             // a TCP connection to a peer's public address
	numKinds
)

// Sent returns what the Prober has sent so far, by kind (KindSmall ...),
// and the bytes of the echoes (IP packets, requests only).
func (p *Prober) Sent() (byKind [numKinds]int64, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, p.sentBytes
}

func (p *Prober) count(kind, size int) {
	p.mu.Lock()
	p.sent[kind]++
	p.sentBytes += int64(size)
	p.mu.Unlock()
}
