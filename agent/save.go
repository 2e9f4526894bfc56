package agent

// Saving the local state: what the node runs on is written (a saveDelay
// after a change, so that a moment's changes make one write; at once when
// the lease changes or is given up) for the next start to boot from, and
// removed when the node gives up the lease it holds.

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/localstate"
)

// kickSave asks for the local state to be saved soon. It never blocks.
func (n *Network) kickSave() {
	select {
	case n.off.saveKick <- struct{}{}:
	default:
	}
}

// saveStates writes the local state whenever it may have changed, a
// saveDelay after the first prompt so that a moment's changes make one
// write, and then only if it did change (the store compares). A lease
// given up or changed is not delayed: a restart in that second would
// boot from a lease the node no longer holds. The State publisher saves
// such a change itself before it announces it (saveNow); this catches
// the ones it does not announce (a state refused before any State). At
// the end of Run a pending change is saved before it returns.
func (n *Network) saveStates(ctx context.Context) error {
	refresh := time.NewTicker(saveRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			select {
			case <-n.off.saveKick:
				n.saveNow()
			default:
			}
			return ctx.Err()
		case <-n.off.saveKick:
		case <-refresh.C:
		}
		if !n.saveUrgent() {
			select {
			case <-ctx.Done():
				n.saveNow()
				return ctx.Err()
			case <-time.After(saveDelay):
			}
		}
		select {
		case <-n.off.saveKick:
		default:
		}
		n.saveNow()
	}
}

// heldKeyLocked is the lease the node holds now, zero while it holds
// none or is acquiring one again. n.mu is held.
func (n *Network) heldKeyLocked() lease.Key {
	if n.hasOwn && n.ownFrom != Reacquiring {
		return n.own.Key
	}
	return lease.Key{}
}

// heldAndForget returns the lease the node holds now (see heldKeyLocked)
// and whether it gave one up since the state was last saved or removed.
func (n *Network) heldAndForget() (lease.Key, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.heldKeyLocked(), n.off.forget
}

// saveUrgent reports whether the lease the node holds (or that it holds
// none) changed since the last save was tried: such a change is saved, or
// the state removed, at once.
func (n *Network) saveUrgent() bool {
	n.mu.Lock()
	held := n.heldKeyLocked()
	n.mu.Unlock()
	n.off.saveMu.Lock()
	defer n.off.saveMu.Unlock()
	return held != n.off.tried
}

// saveNow saves what the node runs on, if that may be saved yet; and
// where it cannot be, removes a local state that holds a lease the node
// does not hold now (given up, or replaced by one whose peers are still
// being listed). It is safe to call from any goroutine but with n.mu
// held.
func (n *Network) saveNow() {
	if n.cfg.LocalState == nil {
		return
	}
	n.off.saveMu.Lock()
	defer n.off.saveMu.Unlock()
	held, forget := n.heldAndForget()
	n.off.tried = held
	st, ok := n.stateToSave()
	if !ok || st.Lease.Key != held {
		n.dropStaleLocked(held, forget)
		return
	}
	wrote, err := n.cfg.LocalState.Save(st)
	switch {
	case err != nil && err.Error() != n.off.saveFailed:
		n.log.Warn("cannot save the local state; the node could not boot from it while the control plane is unreachable", "err", err)
		n.off.saveFailed = err.Error()
	case err == nil && n.off.saveFailed != "":
		n.log.Info("saving the local state works again")
		n.off.saveFailed = ""
	}
	if err != nil {
		// What is on disk is the state before: it must not name a
		// lease the node no longer holds.
		n.dropStaleLocked(held, forget)
		return
	}
	n.off.saved = st.Lease.Key
	n.mu.Lock()
	n.off.forget = false
	n.mu.Unlock()
	if wrote {
		n.log.Debug("saved the local state", "subnet", st.Lease.Key, "peers", len(st.Peers))
	}
}

// dropStale removes the local state if it holds a lease the node does not
// hold now: what the State publisher does before it withdraws a lease
// given up, without waiting for a save.
func (n *Network) dropStale() {
	if n.cfg.LocalState == nil {
		return
	}
	n.off.saveMu.Lock()
	defer n.off.saveMu.Unlock()
	held, forget := n.heldAndForget()
	n.dropStaleLocked(held, forget)
}

// dropStaleLocked removes the local state if it holds a lease the node
// no longer holds: another than held, or, with none held, one the node
// gave up (forget). With none held and nothing given up (a node that
// has not had its lease yet) the state stays: it is what the node boots
// from. A removal that fails is tried again at the next save.
// n.off.saveMu is held.
func (n *Network) dropStaleLocked(held lease.Key, forget bool) {
	switch {
	case !n.off.saved.IsValid(), held.IsValid() && n.off.saved == held, !held.IsValid() && !forget:
		return
	}
	r, ok := n.cfg.LocalState.(StateRemover)
	if !ok {
		return
	}
	if err := r.Remove(); err != nil {
		if err.Error() != n.off.saveFailed {
			n.log.Warn("cannot remove the local state holding a lease the node no longer holds; a restart while the control plane is unreachable would boot from it", "subnet", n.off.saved, "err", err)
			n.off.saveFailed = err.Error()
		}
		return
	}
	n.log.Info("removed the local state: it held a lease the node no longer holds", "subnet", n.off.saved)
	n.off.saved = lease.Key{}
	n.mu.Lock()
	n.off.forget = false
	n.mu.Unlock()
}

// stateToSave returns the state to save, and false while there is none
// the node should boot from: no lease (or a lost one), no listing yet, or
// parts that still come from the local state itself.
func (n *Network) stateToSave() (localstate.State, bool) {
	expiry := n.opt.expiry
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.hasOwn || n.ownFrom == Reacquiring || !n.watched || n.off.lease || n.off.peers || n.v4 == nil && n.v6 == nil {
		return localstate.State{}, false
	}
	conf, err := json.Marshal(n.netConf)
	if err != nil {
		return localstate.State{}, false
	}
	own := n.own
	if expiry != nil {
		if at, ok := expiry.Expiry(own.Key); ok {
			own.Expiration = at
		}
	}
	st := localstate.State{Config: conf, Lease: own, PeersAt: n.off.peersAt, PeersRevision: n.off.peersRev}
	if n.v4 != nil {
		st.VtepMAC = vtepMAC(n.v4.BackendData())
	}
	if n.v6 != nil {
		st.VtepMACv6 = vtepMAC(n.v6.BackendData())
	}
	st.Peers = n.admittedLeasesLocked()
	return st, true
}

// admittedLeasesLocked returns the admitted peers as the leases that give
// them, by key: what admission needs to admit them again. A dual-stack
// lease of which one half is admitted keeps that half only. n.mu is held.
//
// At tens of thousands of peers this is the largest thing a save builds,
// so it is built lean: the leases in one slice (an index by key only when
// two families must be merged), and every peer's backend data cut from
// one buffer.
func (n *Network) admittedLeasesLocked() []lease.Lease {
	// Counted first, so that the slice is allocated once, at its size:
	// grown by appending, it would leave its smaller copies, megabytes
	// at 20,000 peers, as garbage at the moment of the save.
	total := 0
	for i, dp := range []lease.Datapath{n.v4, n.v6} {
		if dp != nil {
			for range n.table.AllAdmitted(i == 1) {
				total++
			}
		}
	}
	out := make([]lease.Lease, 0, total)
	vni := admit.VNI(n.backend)
	var at map[lease.Key]int // the second family's merge, by key
	var arena []byte
	for i, dp := range []lease.Datapath{n.v4, n.v6} {
		if dp == nil {
			continue
		}
		if len(out) > 0 && at == nil {
			at = make(map[lease.Key]int, len(out))
			for j, l := range out {
				at[l.Key] = j
			}
		}
		for p := range n.table.AllAdmitted(i == 1) {
			j, ok := at[p.Key]
			if !ok {
				j = len(out)
				out = append(out, lease.Lease{Key: p.Key, Seniority: p.Seniority, Attrs: lease.Attrs{Owner: p.Owner, BackendType: n.backendType}})
				if at != nil {
					at[p.Key] = j
				}
			}
			if cap(arena)-len(arena) < admit.MaxBackendData {
				arena = make([]byte, 0, 1024*admit.MaxBackendData)
			}
			start := len(arena)
			arena = admit.AppendBackendData(arena, vni, p.VtepMAC)
			data := json.RawMessage(arena[start:len(arena):len(arena)])
			if i == 1 {
				out[j].Attrs.PublicIPv6, out[j].Attrs.BackendV6Data = p.PublicIP, data
			} else {
				out[j].Attrs.PublicIP, out[j].Attrs.BackendData = p.PublicIP, data
			}
		}
	}
	slices.SortFunc(out, func(a, b lease.Lease) int { return a.Key.Compare(b.Key) })
	return out
}
