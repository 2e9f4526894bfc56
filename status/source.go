//go:build linux

package status

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/probe"
	"github.com/weftnet/weft/vxlan"
)

// A Source builds Documents from a running Network.
type Source struct {
	// Network is the node's overlay; nil while the agent starts, when a
	// Document says only Ready's answer.
	Network *agent.Network
	// Prober, if set, adds probing's settings and each peer's last probe,
	// and serves on-demand probes.
	Prober *probe.Prober
	// Ready, if set, replaces Network.Ready: for an agent whose readiness
	// has conditions of its own (flanneld's subnet.env written).
	Ready func() (bool, string)
	// Capacity bounds the answers the Handler builds and writes at once;
	// nil: one of DefaultCapacity for each Handler or Register call.
	Capacity *Capacity
	// MaxPage, if set, cuts the Handler's pages at that many peers
	// whatever the Query asks (at most MaxLimit): for a server anyone can
	// reach, an answer's size, and so what an unread one holds.
	MaxPage int
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
	v4, v6 := vxlan.DatapathsOf(n.Datapaths())
	// Peers are listed only when the query asks for some: a summary
	// reads counts, which copy nothing.
	listing := q.limit() > 0
	var rows []row // every peer the query may select, in Document order
	failing := map[netip.Prefix]bool{}
	for _, fam := range families {
		dp := v4
		if fam.ipv6 {
			dp = v6
		}
		if dp == nil {
			continue
		}
		var rejectedHere []admit.Verdict
		for _, v := range rejected {
			if v.Peer.IPv6 == fam.ipv6 {
				rejectedHere = append(rejectedHere, v)
			}
		}
		for _, sub := range dp.FailedPeers() {
			failing[sub] = true
		}
		// Rejected leases in the order a page's place names them.
		slices.SortStableFunc(rejectedHere, compareRejected)
		dst, c := dp.Summary(), dp.Counts()
		f := Family{
			Family: fam.name, Device: Device{Name: dst.Device.Name, Index: dst.Device.Index, MAC: dst.Device.MAC.String(), MTU: dst.Device.MTU, TXChecksumOffload: offloadOf(dst.Offload)},
			Nexthops: dst.Reconciler.Nexthops, Synced: dst.Synced, Err: dst.Err,
			LastSync: syncOf(dst.Reconciler.LastSync), Syncs: dst.Reconciler.Syncs, Repaired: dst.Reconciler.Repaired,
			Peers: c.Wanted, Programmed: c.Programmed, Failed: c.Failed, Rejected: len(rejectedHere),
		}
		for _, r := range dst.Repairs {
			doc.Repairs = append(doc.Repairs, Repair{Time: r.Time, Family: fam.name, What: r.What, Why: r.Why})
		}
		for _, r := range dst.Reconciler.Repairs {
			doc.Repairs = append(doc.Repairs, Repair{Time: r.Time, Family: fam.name, What: r.What, Why: r.Why})
		}
		doc.Summary.Peers += f.Peers
		doc.Summary.Programmed += f.Programmed
		doc.Summary.Failed += f.Failed
		doc.Summary.Rejected += f.Rejected
		doc.Families = append(doc.Families, f)
		// Query.Family selects the peers listed; the rest of the
		// Document is of both families.
		if !listing || q.Family != "" && q.Family != fam.name {
			continue
		}
		// The owners are joined up front for a search by node name, or a
		// page so large that looking each up would cost more; otherwise
		// the page's rows look theirs up.
		var admitted []admit.Peer
		if q.Peer != "" && !newMatcher(q.Peer).byAddress() || q.limit() > bulkOwners {
			admitted = n.Peers(fam.ipv6)
		}
		if jr := joinRows(fam.name, dp.Peers(), admitted, rejectedHere); rows == nil {
			rows = jr
		} else {
			rows = append(rows, jr...)
		}
	}
	slices.SortStableFunc(doc.Repairs, func(a, b Repair) int { return a.Time.Compare(b.Time) })
	for _, r := range doc.Repairs {
		if now.Sub(r.Time) <= time.Hour {
			doc.Summary.RepairsLastHour++
		}
	}
	if s.Prober != nil {
		cfg, c := s.Prober.Config(), s.Prober.Counts()
		doc.Probing = &Probing{
			Sample: cfg.Sample, IntervalSeconds: cfg.Interval.Seconds(), TimeoutSeconds: cfg.Timeout.Seconds(),
			PeriodSeconds: s.Prober.Period(c.Reachable + c.Unreachable + c.Unprobed).Seconds(),
			Reachable:     c.Reachable, Unreachable: c.Unreachable, Unprobed: c.Unprobed,
			MTUBlackHoles: c.MTUBlackHoles, UnderlayReachable: c.UnderlayReachable, UnderlayUnreachable: c.UnderlayUnreachable,
			UnderlayTCPPort: cfg.UnderlayTCPPort,
		}
		doc.Summary.Unreachable = c.Unreachable
		for _, sub := range s.Prober.Failing() {
			failing[sub] = true
		}
	}
	doc.Summary.Failing = len(failing)
	if listing {
		doc.Peers, doc.Next = s.page(rows, q, failing)
	}
	return doc
}

// bulkOwners is the page size above which a Document copies every
// admitted peer once for their owners, rather than look each row's up.
const bulkOwners = 1000

// A row is one peer before it is rendered: only the page's rows are, so
// that a status of tens of thousands of peers formats a few hundred.
type row struct {
	family string
	subnet netip.Prefix
	ps     *vxlan.PeerStatus // nil for a rejected lease; into the datapath's Status

	verdict *admit.Verdict // set for a rejected lease
	owner   string
}

func (r *row) state() string {
	switch {
	case r.verdict != nil:
		return StateRejected
	case !r.ps.Wanted:
		return StateRemoving
	case r.ps.Err != "":
		return StateFailed
	case r.ps.Programmed:
		return StateProgrammed
	}
	return StatePending
}

// joinRows joins one family's programmed peers (sorted by subnet), its
// admitted leases (sorted by subnet, for the owners) and its rejected
// verdicts (sorted by subnet), a rejected lease after the admitted one at
// its subnet. Both lists are merged, never sorted again.
func joinRows(family string, programmed []vxlan.PeerStatus, admitted []admit.Peer, rejected []admit.Verdict) []row {
	out := make([]row, 0, len(programmed)+len(rejected))
	j, k := 0, 0
	for i := range programmed {
		ps := &programmed[i]
		sub := ps.Peer.Subnet
		for k < len(rejected) && rejected[k].Peer.Subnet.Compare(sub) < 0 {
			out = append(out, row{family: family, subnet: rejected[k].Peer.Subnet, verdict: &rejected[k], owner: rejected[k].Peer.Owner})
			k++
		}
		for j < len(admitted) && admitted[j].Subnet.Compare(sub) < 0 {
			j++
		}
		r := row{family: family, subnet: sub, ps: ps}
		if j < len(admitted) && admitted[j].Subnet == sub {
			r.owner = admitted[j].Owner
		}
		out = append(out, r)
	}
	for ; k < len(rejected); k++ {
		out = append(out, row{family: family, subnet: rejected[k].Peer.Subnet, verdict: &rejected[k], owner: rejected[k].Peer.Owner})
	}
	return out
}

// render makes the Peer of a row.
func (s Source) render(r *row) Peer {
	if r.owner == "" && r.ps != nil && r.ps.Wanted && s.Network != nil {
		if ap, ok := s.Network.Peer(r.family == "ipv6", r.subnet); ok {
			r.owner = ap.Owner
		}
	}
	p := Peer{Family: r.family, Subnet: r.subnet.String(), Node: r.owner, State: r.state()}
	if v := r.verdict; v != nil {
		p.Reason, p.Detail = string(v.Reason), v.Detail
		if v.Peer.PublicIP.IsValid() {
			p.PublicIP = v.Peer.PublicIP.String()
		}
		if !v.Peer.VtepMAC.IsZero() {
			p.VtepMAC = v.Peer.VtepMAC.String()
		}
		return p
	}
	ps := *r.ps
	want := ps.Desired
	if !ps.Wanted {
		want = ps.Peer
	}
	p.PublicIP, p.Err = want.PublicIP.String(), ps.Err
	if want.VtepMAC != (lease.MAC{}) { // none for a direct-routed peer
		p.VtepMAC = want.VtepMAC.String()
	}
	if ps.Wanted && ps.Needs != 0 {
		p.Needs, p.Missing = ps.Needs.Names(), ps.Missing.Names()
	}
	if ps.Wanted && ps.Peer.PublicIP.IsValid() && ps.Peer != ps.Desired {
		p.Written = &Written{PublicIP: ps.Peer.PublicIP.String(), VtepMAC: ps.Peer.VtepMAC.String()}
	}
	if !ps.Changed.IsZero() {
		t := ps.Changed
		p.Changed = &t
	}
	s.addProbe(&p, r.subnet)
	return p
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
	pr := &Probe{Time: r.Time, Reachable: r.Reachable, Err: r.Err, Since: r.Since, State: string(r.State), Diagnosis: r.Diagnosis}
	if r.Reachable {
		pr.RTTSeconds = r.RTT.Seconds()
	}
	if m := r.PathMTU; m != nil {
		pr.PathMTU = &PathMTU{Checked: m.Checked, DeviceMTU: m.DeviceMTU, Overhead: m.Overhead, OK: m.OK, Carries: m.Carries, Drops: m.Drops, Exact: m.Exact}
	}
	if u := r.Underlay; u != nil {
		pr.Underlay = &Underlay{Time: u.Time, Reachable: u.Reachable, By: u.By, Err: u.Err}
	}
	return pr
}

func (r *row) place() place {
	p := place{ipv6: r.family == "ipv6", subnet: r.subnet}
	if r.verdict != nil {
		p.rejected, p.key = true, r.verdict.Peer.Key
	}
	return p
}

// page applies q's filters and page to rows, which are in Document
// order, and renders what it keeps.
func (s Source) page(rows []row, q Query, failing map[netip.Prefix]bool) ([]Peer, string) {
	limit := q.limit()
	out := []Peer{}
	var after place
	skipping := q.After != ""
	if skipping {
		var err error
		if after, err = parsePlace(q.After); err != nil {
			return out, "" // ParseQuery has refused it already
		}
	}
	m := newMatcher(q.Peer)
	var last place
	for i := range rows {
		r := &rows[i]
		if skipping && r.place().compare(after) <= 0 {
			continue
		}
		if !q.selects(r, failing, m) {
			continue
		}
		if len(out) == limit {
			return out, last.String()
		}
		out = append(out, s.render(r))
		last = r.place()
	}
	return out, ""
}

// matcher is Query.Peer, parsed once.
type matcher struct {
	raw    string
	addr   netip.Addr
	prefix netip.Prefix
}

func newMatcher(peer string) matcher {
	m := matcher{raw: peer}
	if a, err := netip.ParseAddr(peer); err == nil {
		m.addr = a
	} else if p, err := netip.ParsePrefix(peer); err == nil {
		m.prefix = p.Masked()
	}
	return m
}

// byAddress says the matcher needs no owner: it matches subnets or
// addresses.
func (m matcher) byAddress() bool { return m.addr.IsValid() || m.prefix.IsValid() }

func (m matcher) matches(r *row) bool {
	switch {
	case m.raw == "":
		return true
	case r.owner != "" && r.owner == m.raw:
		return true
	case m.addr.IsValid():
		return r.subnet.Contains(m.addr) || r.publicIP() == m.addr
	case m.prefix.IsValid():
		return r.subnet == m.prefix
	}
	return false
}

func (r *row) publicIP() netip.Addr {
	if r.verdict != nil {
		return r.verdict.Peer.PublicIP
	}
	if r.ps.Wanted {
		return r.ps.Desired.PublicIP
	}
	return r.ps.Peer.PublicIP
}

// selects reports whether q's filters keep r.
func (q Query) selects(r *row, failing map[netip.Prefix]bool, m matcher) bool {
	if q.Failing || q.Rejected {
		isFailing := r.verdict == nil && r.ps.Wanted && failing[r.subnet]
		if !(q.Failing && isFailing || q.Rejected && r.verdict != nil) {
			return false
		}
	}
	return m.matches(r)
}

func leaseOf(ls agent.LeaseStatus) *Lease {
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

// offloadOf is the document's form of a datapath's TX checksum offload.
func offloadOf(o vxlan.OffloadStatus) *Offload {
	want := "off"
	if o.Want {
		want = "on"
	}
	return &Offload{Mode: string(cmp.Or(o.Mode, vxlan.ChecksumOffloadAuto)), Want: want, State: o.State, Why: o.Why, Err: o.Err}
}
