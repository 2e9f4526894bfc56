package status

import (
	"net/url"
	"testing"
)

func TestParseQuery(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Query
		err  bool
	}{
		{"", Query{}, false},
		{"failing=1", Query{Failing: true}, false},
		{"failing=true&rejected=1", Query{Failing: true, Rejected: true}, false},
		{"failing=0", Query{}, false},
		{"peer=node-b&family=ipv6&limit=10&after=ipv4/10.244.1.0/24/admitted", Query{Peer: "node-b", Family: "ipv6", Limit: 10, After: "ipv4/10.244.1.0/24/admitted"}, false},
		{"limit=-1", Query{Limit: -1}, false},
		{"limit=5000", Query{Limit: 5000}, false},
		{"limit=5001", Query{}, true},
		{"limit=-2", Query{}, true},
		{"limit=x", Query{}, true},
		{"failing=yes", Query{}, true},
		{"family=ipv5", Query{}, true},
		{"after=ipv4/10.244.1.0/24/rejected/10.244.1.0-24", Query{After: "ipv4/10.244.1.0/24/rejected/10.244.1.0-24"}, false},
		{"after=ipv6/fd00::/64/rejected/10.244.1.0-24%26fd00::-64", Query{After: "ipv6/fd00::/64/rejected/10.244.1.0-24&fd00::-64"}, false},
		{"after=ipv4/10.244.1.0/24/rejected", Query{}, true},
		{"after=ipv4/10.244.1.0/24/admitted/x", Query{}, true},
		{"after=ipv4/10.244.1.0/24", Query{}, true},
		{"after=ipv7/10.244.1.0/24/admitted", Query{}, true},
		{"after=ipv4/nonsense/admitted", Query{}, true},
	} {
		v, _ := url.ParseQuery(tc.in)
		got, err := ParseQuery(v)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseQuery(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil {
			if back, err := ParseQuery(got.Values()); err != nil || back != got {
				t.Errorf("ParseQuery(%+v.Values()) = %+v, %v", got, back, err)
			}
		}
	}
}

// FuzzParseQuery: any query string either fails to parse or yields a
// Query that encodes and parses back to itself.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "failing=1&rejected=1", "peer=10.244.3.0/24&limit=-1", "after=ipv6/fd00::/64/rejected/x&family=ipv6", "limit=99999", "failing=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		q, err := ParseQuery(v)
		if err != nil {
			return
		}
		if q.limit() < 0 || q.limit() > MaxLimit {
			t.Fatalf("%q: limit %d", s, q.limit())
		}
		if back, err := ParseQuery(q.Values()); err != nil || back != q {
			t.Fatalf("%q: %+v encodes to %v, which parses to %+v, %v", s, q, q.Values(), back, err)
		}
	})
}
