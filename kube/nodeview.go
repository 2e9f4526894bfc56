package kube

import (
	"slices"

	"github.com/weftnet/weft/lease"
)

// nodeView is what WatchLeases has seen of each node's lease and sent of
// each key. Keys are PodCIDRs, which the API server does not keep apart,
// so two Nodes may claim one key: the oldest holds it, and is what was
// sent; the others wait in others, which is almost always empty.
type nodeView struct {
	byNode  map[string]lease.Lease // every node's usable lease
	holders map[lease.Key]string   // the node whose lease was sent for each key
	others  map[lease.Key][]string // other nodes with the same key
}

func newNodeView() *nodeView {
	return &nodeView{byNode: map[string]lease.Lease{}, holders: map[lease.Key]string{}, others: map[lease.Key][]string{}}
}

// older reports whether node a's lease ranks before node b's for one key:
// by seniority (a Node's creation time; unknown last), then by name.
func (v *nodeView) older(a, b string) bool {
	la, lb := v.byNode[a], v.byNode[b]
	if la.Seniority != lb.Seniority {
		return la.Older(lb)
	}
	return a < b
}

// claimants returns the nodes whose lease has key k, the holder first.
func (v *nodeView) claimants(k lease.Key) []string {
	h, ok := v.holders[k]
	if !ok {
		return nil
	}
	return append([]string{h}, v.others[k]...)
}

// claim records node's lease in a snapshot, before anything is sent:
// the holder of each key is settled by sendAll.
func (v *nodeView) claim(node string, l lease.Lease) {
	v.byNode[node] = l
	if _, held := v.holders[l.Key]; held {
		v.others[l.Key] = append(v.others[l.Key], node)
	} else {
		v.holders[l.Key] = node
	}
}

// sendAll settles every key's holder and returns one Added event each.
func (v *nodeView) sendAll() []lease.Event {
	events := make([]lease.Event, 0, len(v.holders))
	for k := range v.others {
		v.settle(k)
	}
	for _, node := range v.holders {
		events = append(events, lease.Event{Type: lease.Added, Lease: v.byNode[node]})
	}
	return events
}

// settle makes the oldest claimant of k its holder.
func (v *nodeView) settle(k lease.Key) {
	all := v.claimants(k)
	if len(all) == 0 {
		return
	}
	slices.SortFunc(all, func(a, b string) int {
		if v.older(a, b) {
			return -1
		}
		return 1
	})
	v.holders[k] = all[0]
	if len(all) > 1 {
		v.others[k] = all[1:]
	} else {
		delete(v.others, k)
	}
}

// update records node's lease now (has false: it has none), and returns
// the events that turn what was sent into what is to be sent, and the keys
// that more than one node claims now or did.
func (v *nodeView) update(node string, cur lease.Lease, has bool) (events []lease.Event, shared []lease.Key) {
	prev, had := v.byNode[node]
	// At most two keys change: the one the node had, the one it has. Kept
	// in arrays, as this runs for every Node update.
	var keysArr [2]lease.Key
	keys := keysArr[:0]
	if had {
		keys = append(keys, prev.Key)
	}
	if has && (!had || cur.Key != prev.Key) {
		keys = append(keys, cur.Key)
	}
	var sent [2]lease.Lease
	var wasSent [2]bool
	for i, k := range keys {
		if h, ok := v.holders[k]; ok {
			sent[i], wasSent[i] = v.byNode[h], true
		}
		if len(v.others[k]) > 0 {
			shared = append(shared, k)
		}
	}
	// Take node out of the key it had, then put its lease in.
	if had {
		if v.holders[prev.Key] == node {
			delete(v.holders, prev.Key)
			if rest := v.others[prev.Key]; len(rest) > 0 {
				v.holders[prev.Key], v.others[prev.Key] = rest[0], rest[1:]
			}
		} else {
			v.others[prev.Key] = slices.DeleteFunc(v.others[prev.Key], func(n string) bool { return n == node })
		}
		if len(v.others[prev.Key]) == 0 {
			delete(v.others, prev.Key)
		}
		delete(v.byNode, node)
	}
	if has {
		v.claim(node, cur)
	}
	for i, k := range keys {
		v.settle(k)
		if len(v.others[k]) > 0 && !slices.Contains(shared, k) {
			shared = append(shared, k)
		}
		before := sent[i]
		h, ok := v.holders[k]
		now := v.byNode[h]
		switch {
		case !wasSent[i] && ok:
			events = append(events, lease.Event{Type: lease.Added, Lease: now})
		case wasSent[i] && !ok:
			events = append(events, lease.Event{Type: lease.Removed, Lease: before})
		case wasSent[i] && !before.Same(now):
			events = append(events, lease.Event{Type: lease.Changed, Lease: now, Prev: before})
		}
	}
	return events, shared
}
