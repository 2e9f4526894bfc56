package status

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
)

// DefaultSocket is where flanneld serves the status by default, and
// where weftctl looks for it.
const DefaultSocket = "/run/weft/status.sock"

// Paths the Handler serves.
const (
	Path      = "/status"       // GET: a Document; the query parameters are a Query's
	ProbePath = "/status/probe" // POST ?peer=X: a ProbeAnswer
	// ProbeHeader must be set on a probe request (to anything).
	ProbeHeader = "Weft-Probe"
)

// Limits of Query.Limit.
const (
	DefaultLimit = 500
	MaxLimit     = 5000
)

// A Query selects the peers of a Document. The zero Query selects every
// peer, up to DefaultLimit.
type Query struct {
	// Failing selects the failed and unreachable peers, Rejected the
	// rejected ones; both, either; neither, every peer.
	Failing, Rejected bool
	// Peer selects one peer: its subnet, an address in it, its public
	// IP, or its node's name.
	Peer string
	// Family selects "ipv4" or "ipv6"; "" both.
	Family string
	// Limit is the page size: 0 means DefaultLimit, -1 no peers at all
	// (the summary only); at most MaxLimit.
	Limit int
	// After is the Next of the previous page.
	After string
}

// Values encodes q as URL query parameters.
func (q Query) Values() url.Values {
	v := url.Values{}
	if q.Failing {
		v.Set("failing", "1")
	}
	if q.Rejected {
		v.Set("rejected", "1")
	}
	if q.Peer != "" {
		v.Set("peer", q.Peer)
	}
	if q.Family != "" {
		v.Set("family", q.Family)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	return v
}

// ParseQuery decodes URL query parameters, as Values makes them.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Peer: v.Get("peer"), Family: v.Get("family"), After: v.Get("after")}
	var err error
	flag := func(name string) bool {
		s := v.Get(name)
		if s == "" {
			return false
		}
		b, e := strconv.ParseBool(s)
		if e != nil && err == nil {
			err = fmt.Errorf("%s=%q: want 1 or 0", name, s)
		}
		return b
	}
	q.Failing, q.Rejected = flag("failing"), flag("rejected")
	if err != nil {
		return Query{}, err
	}
	switch q.Family {
	case "", "ipv4", "ipv6":
	default:
		return Query{}, fmt.Errorf("family=%q: want ipv4 or ipv6", q.Family)
	}
	if q.After != "" {
		if _, err := parsePlace(q.After); err != nil {
			return Query{}, err
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < -1 || n > MaxLimit {
			return Query{}, fmt.Errorf("limit=%q: want -1 (no peers) to %d", s, MaxLimit)
		}
		q.Limit = n
	}
	return q, nil
}

// limit is the page size q asks for.
func (q Query) limit() int {
	switch q.Limit {
	case 0:
		return DefaultLimit
	case -1:
		return 0
	}
	return q.Limit
}

// A place is a row's position in Document order, for Query.After:
// family, subnet, and for a rejected lease (after the admitted one at its
// subnet) its key, as several leases may be rejected at one subnet.
type place struct {
	ipv6     bool
	subnet   netip.Prefix
	rejected bool
	key      lease.Key // the rejected lease's
}

func (p place) String() string {
	fam := "ipv4"
	if p.ipv6 {
		fam = "ipv6"
	}
	if p.rejected {
		return fam + "/" + p.subnet.String() + "/" + StateRejected + "/" + p.key.String()
	}
	return fam + "/" + p.subnet.String() + "/admitted"
}

func (p place) compare(o place) int {
	switch {
	case p.ipv6 != o.ipv6:
		if p.ipv6 {
			return 1
		}
		return -1
	case p.subnet != o.subnet:
		return p.subnet.Compare(o.subnet) // the order Documents list peers in
	case p.rejected != o.rejected:
		if p.rejected {
			return 1
		}
		return -1
	}
	return p.key.Compare(o.key)
}

// compareRejected orders the leases rejected at one family's subnets as
// their places do.
func compareRejected(a, b admit.Verdict) int {
	return place{subnet: a.Peer.Subnet, rejected: true, key: a.Peer.Key}.compare(place{subnet: b.Peer.Subnet, rejected: true, key: b.Peer.Key})
}

// parsePlace reads Query.After; a malformed one is an error.
func parsePlace(s string) (place, error) {
	bad := fmt.Errorf("after=%q: want the next of a previous answer", s)
	fam, rest, ok := strings.Cut(s, "/")
	if !ok || fam != "ipv4" && fam != "ipv6" {
		return place{}, bad
	}
	// The subnet holds one slash; the state follows the second.
	i := strings.Index(rest, "/")
	if i < 0 {
		return place{}, bad
	}
	j := strings.Index(rest[i+1:], "/")
	if j < 0 {
		return place{}, bad
	}
	sub, err := netip.ParsePrefix(rest[:i+1+j])
	if err != nil {
		return place{}, bad
	}
	state, key, hasKey := strings.Cut(rest[i+2+j:], "/")
	switch {
	case state == "admitted" && !hasKey:
		return place{ipv6: fam == "ipv6", subnet: sub}, nil
	case state == StateRejected && hasKey:
		k, err := lease.ParseKey(key)
		if err != nil {
			return place{}, bad
		}
		return place{ipv6: fam == "ipv6", subnet: sub, rejected: true, key: k}, nil
	}
	return place{}, bad
}
