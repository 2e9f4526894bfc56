//go:build linux

package status

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/vxlan"
	"github.com/weftnet/weft/vxlan/probe"
)

// A Source builds Documents from a running Network.
type Source struct {
	// Network is the node's overlay; nil while the agent starts, when a
	// Document says only Ready's answer.
	Network *vxlan.Network
	// Prober, if set, adds probing's settings and each peer's last probe,
	// and serves on-demand probes.
	Prober *probe.Prober
	// Ready, if set, replaces Network.Ready: for an agent whose readiness
	// has conditions of its own (flanneld's subnet.env written).
	Ready func() (bool, string)
}

// families in Document order.
var families = []struct {
	name string
	ipv6 bool
}{{"ipv4", false}, {"ipv6", true}}

// Document builds the status, with the peers q selects.
func (s Source) Document(q Query) Document {
	n := s.Network
	now := time.Now()
	doc := Document{Version: Version, Time: now, Families: []Family{}, Peers: []Peer{}, Repairs: []Repair{}}
	switch {
	case s.Ready != nil:
		doc.Ready, doc.Reason = s.Ready()
	case n != nil:
		doc.Ready, doc.Reason = n.Ready()
	default:
		doc.Reason = "not running yet"
	}
	if n == nil {
		return doc // an agent still starting: only why it is not ready
	}
	doc.Node, doc.Condition = n.Node(), n.Condition()
	if ls := n.LeaseStatus(); ls.Held {
		doc.Lease = leaseOf(ls)
	}
	if c, live, ok := n.Config(); ok {
		src := "live"
		if !live {
			src = "local state"
		}
		raw, _ := c.MarshalJSON()
		doc.Config = &Config{NetConf: raw, Source: src}
	}
	if off, ok := n.Offline(); ok {
		doc.Offline = &Offline{Since: off.Since, Written: off.Written, Lease: off.Lease, Peers: off.Peers}
	}

	rejected := n.Rejected()
	v4, v6 := n.Datapaths()
	var all []Peer // every peer, in Document order, for the summary and the filters
	for _, fam := range families {
		dp := v4
		if fam.ipv6 {
			dp = v6
		}
		if dp == nil || q.Family != "" && q.Family != fam.name {
			continue
		}
		st := dp.Status()
		rec := st.Reconciler
		f := Family{
			Family: fam.name, Device: Device{Name: st.Device.Name, Index: st.Device.Index, MAC: st.Device.MAC.String(), MTU: st.Device.MTU},
			Nexthops: rec.Nexthops, Synced: st.Synced, Err: st.Err, LastSync: syncOf(rec.LastSync), Syncs: rec.Syncs, Repaired: rec.Repaired,
		}
		for _, r := range st.Repairs {
			doc.Repairs = append(doc.Repairs, Repair{Time: r.Time, Family: fam.name, What: r.What, Why: r.Why})
		}
		for _, r := range rec.Repairs {
			doc.Repairs = append(doc.Repairs, Repair{Time: r.Time, Family: fam.name, What: r.What, Why: r.Why})
		}
		peers := s.peersOf(fam.name, rec.Peers, n.Peers(fam.ipv6), rejected, fam.ipv6)
		for _, p := range peers {
			switch p.State {
			case StateRejected:
				f.Rejected++
			case StateRemoving:
			default:
				f.Peers++
				if p.State == StateProgrammed {
					f.Programmed++
				}
				if p.State == StateFailed {
					f.Failed++
				}
			}
		}
		all = append(all, peers...)
		doc.Families = append(doc.Families, f)
	}
	slices.SortStableFunc(doc.Repairs, func(a, b Repair) int { return a.Time.Compare(b.Time) })
	for _, r := range doc.Repairs {
		if now.Sub(r.Time) <= time.Hour {
			doc.Summary.RepairsLastHour++
		}
	}
	for _, f := range doc.Families {
		doc.Summary.Peers += f.Peers
		doc.Summary.Programmed += f.Programmed
		doc.Summary.Failed += f.Failed
		doc.Summary.Rejected += f.Rejected
	}
	for _, p := range all {
		if p.Probe != nil && !p.Probe.Reachable {
			doc.Summary.Unreachable++
		}
		if p.Failing() {
			doc.Summary.Failing++
		}
	}
	if s.Prober != nil {
		cfg, c := s.Prober.Config(), s.Prober.Counts()
		doc.Probing = &Probing{
			Sample: cfg.Sample, IntervalSeconds: cfg.Interval.Seconds(), TimeoutSeconds: cfg.Timeout.Seconds(),
			PeriodSeconds: s.Prober.Period(c.Reachable + c.Unreachable + c.Unprobed).Seconds(),
			Reachable:     c.Reachable, Unreachable: c.Unreachable, Unprobed: c.Unprobed,
		}
	}
	doc.Peers, doc.Next = page(all, q)
	return doc
}

// peersOf joins one family's programmed peers (sorted by subnet), its
// admitted leases (sorted by subnet, for the owners) and the rejected
// verdicts.
func (s Source) peersOf(family string, programmed []vxlan.PeerStatus, admitted []admit.Peer, rejected []admit.Verdict, ipv6 bool) []Peer {
	out := make([]Peer, 0, len(programmed))
	at := make([]netip.Prefix, 0, len(programmed)) // out's subnets
	j := 0
	for _, ps := range programmed {
		want := ps.Desired
		if !ps.Wanted {
			want = ps.Peer
		}
		p := Peer{Family: family, Subnet: want.Subnet.String(), PublicIP: want.PublicIP.String(), VtepMAC: want.VtepMAC.String(), Err: ps.Err}
		if ps.Wanted && ps.Needs != 0 {
			p.Needs = ps.Needs.Names()
			p.Missing = ps.Missing.Names()
		}
		switch {
		case !ps.Wanted:
			p.State = StateRemoving
		case ps.Err != "":
			p.State = StateFailed
		case ps.Programmed:
			p.State = StateProgrammed
		default:
			p.State = StatePending
		}
		if ps.Wanted && ps.Programmed && ps.Peer != ps.Desired || ps.Wanted && ps.Err != "" && ps.Peer != ps.Desired && ps.Peer.PublicIP.IsValid() {
			p.Written = &Written{PublicIP: ps.Peer.PublicIP.String(), VtepMAC: ps.Peer.VtepMAC.String()}
		}
		if !ps.Changed.IsZero() {
			t := ps.Changed
			p.Changed = &t
		}
		for j < len(admitted) && admitted[j].Subnet.Compare(want.Subnet) < 0 {
			j++
		}
		if j < len(admitted) && admitted[j].Subnet == want.Subnet {
			p.Node = admitted[j].Owner
		}
		s.addProbe(&p, want.Subnet)
		out, at = append(out, p), append(at, want.Subnet)
	}
	// Both lists are sorted by subnet: merged, not sorted again, with a
	// rejected lease after the admitted one at its subnet.
	var rej []Peer
	var rejAt []netip.Prefix
	for _, v := range rejected {
		if v.Peer.IPv6 != ipv6 {
			continue
		}
		p := Peer{Family: family, Subnet: v.Peer.Subnet.String(), Node: v.Peer.Owner, State: StateRejected, Reason: string(v.Reason), Detail: v.Detail}
		if v.Peer.PublicIP.IsValid() {
			p.PublicIP = v.Peer.PublicIP.String()
		}
		if v.Peer.VtepMAC != (admit.MAC{}) {
			p.VtepMAC = vxlan.MAC(v.Peer.VtepMAC).String()
		}
		rej, rejAt = append(rej, p), append(rejAt, v.Peer.Subnet)
	}
	if len(rej) == 0 {
		return out
	}
	merged := make([]Peer, 0, len(out)+len(rej))
	i := 0
	for k, p := range out {
		for i < len(rej) && rejAt[i].Compare(at[k]) < 0 {
			merged = append(merged, rej[i])
			i++
		}
		merged = append(merged, p)
	}
	return append(merged, rej[i:]...)
}

func (s Source) addProbe(p *Peer, subnet netip.Prefix) {
	if s.Prober == nil {
		return
	}
	if r, ok := s.Prober.Result(subnet); ok {
		p.Probe = probeOf(r)
	}
}

func probeOf(r probe.Result) *Probe {
	pr := &Probe{Time: r.Time, Reachable: r.Reachable, Err: r.Err, Since: r.Since}
	if r.Reachable {
		pr.RTTSeconds = r.RTT.Seconds()
	}
	return pr
}

// cursor is a peer's place in Document order, for Query.After.
func cursor(p Peer) string { return p.Family + "/" + p.Subnet + "/" + p.State }

// page applies q's filters and page to all, which is in Document order.
func page(all []Peer, q Query) ([]Peer, string) {
	limit := q.limit()
	out := []Peer{}
	if limit == 0 {
		return out, ""
	}
	skipping := q.After != ""
	for i, p := range all {
		if skipping {
			if cursor(p) == q.After {
				skipping = false
			}
			continue
		}
		if !q.selects(p) {
			continue
		}
		if len(out) == limit {
			// More remain only if one of the rest is selected.
			for _, rest := range all[i:] {
				if q.selects(rest) {
					return out, cursor(out[len(out)-1])
				}
			}
			return out, ""
		}
		out = append(out, p)
	}
	return out, ""
}

// selects reports whether q's filters keep p.
func (q Query) selects(p Peer) bool {
	if q.Failing || q.Rejected {
		if !(q.Failing && p.Failing() || q.Rejected && p.State == StateRejected) {
			return false
		}
	}
	if q.Peer == "" {
		return true
	}
	if p.Node != "" && p.Node == q.Peer || p.Subnet == q.Peer || p.PublicIP == q.Peer {
		return true
	}
	subnet, err := netip.ParsePrefix(p.Subnet)
	if err != nil {
		return false
	}
	if a, err := netip.ParseAddr(q.Peer); err == nil {
		return subnet.Contains(a)
	}
	if pfx, err := netip.ParsePrefix(q.Peer); err == nil {
		return pfx.Masked() == subnet
	}
	return strings.EqualFold(p.Node, q.Peer) && p.Node != ""
}

func leaseOf(ls vxlan.LeaseStatus) *Lease {
	l := &Lease{From: string(ls.From), Since: ls.Since}
	k, a := ls.Lease.Key, ls.Lease.Attrs
	if k.IPv4.IsValid() {
		l.Subnet = k.IPv4.String()
	}
	if k.IPv6.IsValid() {
		l.IPv6Subnet = k.IPv6.String()
	}
	if a.PublicIP.IsValid() {
		l.PublicIP = a.PublicIP.String()
	}
	if a.PublicIPv6.IsValid() {
		l.PublicIPv6 = a.PublicIPv6.String()
	}
	if !ls.Expires.IsZero() {
		t := ls.Expires
		l.Expires = &t
	}
	if ls.Renewals >= 0 {
		r := ls.Renewals
		l.Renewals = &r
	}
	return l
}

func syncOf(r vxlan.SyncResult) Sync {
	return Sync{Time: r.Time, DurationSeconds: r.Duration.Seconds(), Peers: r.Peers, Writes: r.Writes, Repairs: r.Repairs, Errors: r.Errors, Failed: r.Failed}
}
