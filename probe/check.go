//go:build linux

package probe

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// check probes t: a small echo over the overlay and, at once, the sizes
// of a path MTU check when t has an MTU; when the small echo is not
// answered, the underlay. It records the outcome, unless ctx ended first:
// a probe cut short says nothing of the peer.
func (p *Prober) check(ctx context.Context, t Target) (Result, bool) {
	r := Result{Time: time.Now()}
	e, openErr := p.echoerFor(t.Addr)
	var sizes []int
	if t.MTU > 0 && t.Addr.IsValid() && t.MTU > minSize(t.Addr.Is6()) {
		p.mu.Lock()
		switch ps := p.peerOf[t.Subnet]; {
		case ps == nil:
			sizes = (&pathState{}).plan(t)
		case ps.last.Reachable:
			sizes = ps.path.plan(t)
		}
		// A peer unreachable at its last probe gets the small echo alone:
		// its path is checked again once it answers.
		p.mu.Unlock()
	}
	answered := make([]bool, len(sizes))
	switch {
	case !t.Addr.IsValid():
		r.Err = "no address to probe"
	case e == nil && openErr != nil:
		r.Err = openErr.Error()
	case e == nil:
		r.Err = "the prober is not running"
	default:
		var wg sync.WaitGroup
		for i, size := range sizes {
			wg.Go(func() { answered[i] = p.echo(ctx, e, t.Addr, size, KindFull).ok })
		}
		o := p.echo(ctx, e, t.Addr, 0, KindSmall)
		wg.Wait()
		r.Sent, r.Reachable, r.RTT, r.Err = o.sent, o.ok, o.rtt, o.err
	}
	if ctx.Err() != nil {
		return r, false
	}
	if !r.Reachable {
		r.Underlay = p.underlay(ctx, t)
		if ctx.Err() != nil {
			return r, false
		}
	}

	p.mu.Lock()
	ps := p.peerOf[t.Subnet]
	if ps == nil {
		ps = &peerState{}
		p.peerOf[t.Subnet] = ps
	}
	if r.Reachable && len(sizes) > 0 {
		ps.path.update(t, sizes, answered, r.Time, minSize(t.Addr.Is6()))
	}
	r.PathMTU = ps.path.result()
	p.mu.Unlock()
	r.State, r.Diagnosis = diagnose(t, r)
	return p.record(t, r), true
}

// diagnose names r's State and what it means.
func diagnose(t Target, r Result) (State, string) {
	encap := t.Encap
	if encap == "" {
		encap = "the overlay's packets"
	}
	switch u := r.Underlay; {
	case r.Reachable && r.PathMTU != nil && !r.PathMTU.OK:
		return StateMTUBlackHole, blackHoleDiagnosis(t, r.PathMTU)
	case r.Reachable:
		return StateReachable, ""
	case u == nil:
		return StateUnreachable, "unreachable over the overlay (" + r.Err + "); the underlay was not checked: the peer names no public IP"
	case u.Reachable:
		return StateOverlayDown, fmt.Sprintf("underlay reachable (%s answered), overlay not: %s dropped on the path or at the peer, or the peer's datapath", u.By, encap)
	case u.Err != "" && u.By == "":
		return StateUnreachable, "unreachable over the overlay (" + r.Err + "); the underlay check failed: " + u.Err
	}
	return StateUnderlayDown, fmt.Sprintf("underlay unreachable: %s; the peer's host is down or the network between the nodes is cut (or filters %s)", r.Underlay.Err, r.Underlay.By)
}

// echoerFor returns the socket of addr's family, or why there is none.
func (p *Prober) echoerFor(addr netip.Addr) (*echoer, error) {
	fam := 0
	if addr.Is6() {
		fam = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.echoers[fam], p.openErr[fam]
}

// echoOutcome is what one echo found.
type echoOutcome struct {
	ok   bool
	rtt  time.Duration
	sent int
	err  string
}

// echo sends up to attempts echo requests of size bytes to dst, spread
// over the timeout, until one is answered.
func (p *Prober) echo(ctx context.Context, e *echoer, dst netip.Addr, size, kind int) echoOutcome {
	var o echoOutcome
	replies := make(chan time.Duration, attempts)
	deadline := time.NewTimer(p.cfg.Timeout)
	defer deadline.Stop()
	gap := time.NewTicker(p.cfg.Timeout / attempts)
	defer gap.Stop()
	var sendErr error
	for {
		if o.sent < attempts {
			forget, err := e.send(dst, size, replies)
			if err != nil {
				sendErr = err
			} else {
				o.sent++
				p.count(kind, max(size, minSize(e.ipv6)))
				defer forget()
			}
		}
		select {
		case rtt := <-replies:
			o.ok, o.rtt = true, rtt
			return o
		case <-deadline.C:
			o.err = fmt.Sprintf("no reply to %d echo requests in %s", o.sent, p.cfg.Timeout)
			if o.sent == 0 && sendErr != nil {
				o.err = "send: " + sendErr.Error()
			}
			return o
		case <-ctx.Done():
			o.err = ctx.Err().Error()
			return o
		case <-gap.C:
		}
	}
}
