package status

import (
	"fmt"
	"net/url"
	"strconv"
)

// DefaultSocket is where flanneld serves the status by default, and
// where weftctl looks for it.
const DefaultSocket = "/run/weft/status.sock"

// Paths the Handler serves.
const (
	Path      = "/status"       // GET: a Document; the query parameters are a Query's
	ProbePath = "/status/probe" // POST ?peer=X: a ProbeAnswer
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
