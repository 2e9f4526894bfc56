package lease

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func testLease(key string, publicIP string) Lease {
	k, err := ParseKey(key)
	if err != nil {
		panic(err)
	}
	return Lease{Key: k, Attrs: Attrs{PublicIP: netip.MustParseAddr(publicIP), BackendType: "vxlan"}}
}

func TestDiff(t *testing.T) {
	a := testLease("10.0.1.0-24", "192.0.2.1")
	b := testLease("10.0.2.0-24", "192.0.2.2")
	c := testLease("10.0.3.0-24", "192.0.2.3")
	bMoved := testLease("10.0.2.0-24", "192.0.2.22")
	aRenewed := a
	aRenewed.Expiration = time.Unix(1e9, 0)

	tests := []struct {
		name          string
		before, after []Lease
		want          []Event
	}{
		{"both empty", nil, nil, nil},
		{"snapshot", nil, []Lease{c, a}, []Event{{Type: Added, Lease: a}, {Type: Added, Lease: c}}},
		{"all removed", []Lease{a, b}, nil, []Event{{Type: Removed, Lease: a}, {Type: Removed, Lease: b}}},
		{"unchanged", []Lease{a, b}, []Lease{b, a}, nil},
		{"renewal is not a change", []Lease{a}, []Lease{aRenewed}, nil},
		{
			"attribute change on a known subnet",
			[]Lease{a, b}, []Lease{a, bMoved},
			[]Event{{Type: Changed, Lease: bMoved, Prev: &b}},
		},
		{
			"mixed, ordered by key",
			[]Lease{c, b}, []Lease{a, bMoved},
			[]Event{{Type: Added, Lease: a}, {Type: Changed, Lease: bMoved, Prev: &b}, {Type: Removed, Lease: c}},
		},
	}
	for _, tt := range tests {
		got := Diff(tt.before, tt.after)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestEventTypeString(t *testing.T) {
	for typ, want := range map[EventType]string{Added: "added", Changed: "changed", Removed: "removed", 0: "EventType(0)", 9: "EventType(9)"} {
		if got := typ.String(); got != want {
			t.Errorf("EventType(%d).String() = %q, want %q", typ, got, want)
		}
	}
}

// TestDiffSeniority: a key deleted and created again while nobody watched
// (same attributes, new seniority) is a change.
func TestDiffSeniority(t *testing.T) {
	a := testLease("10.0.1.0-24", "192.0.2.1")
	a.Seniority = 5
	again := a
	again.Seniority = 9
	if ev := Diff([]Lease{a}, []Lease{again}); len(ev) != 1 || ev[0].Type != Changed || ev[0].Lease.Seniority != 9 {
		t.Fatalf("Diff = %+v, want one Changed with the new seniority", ev)
	}
}

func TestOlder(t *testing.T) {
	k1, k2 := Key{IPv4: netip.MustParsePrefix("10.0.1.0/24")}, Key{IPv4: netip.MustParsePrefix("10.0.2.0/24")}
	for _, tc := range []struct {
		a, b Lease
		want bool
	}{
		{Lease{Key: k2, Seniority: 1}, Lease{Key: k1, Seniority: 2}, true},
		{Lease{Key: k1, Seniority: 2}, Lease{Key: k2, Seniority: 1}, false},
		{Lease{Key: k1, Seniority: 3}, Lease{Key: k2, Seniority: 3}, true}, // ties by key
		{Lease{Key: k2, Seniority: 3}, Lease{Key: k1, Seniority: 3}, false},
		{Lease{Key: k2, Seniority: 1}, Lease{Key: k1}, true}, // unknown ranks last
		{Lease{Key: k1}, Lease{Key: k2, Seniority: 1}, false},
		{Lease{Key: k1}, Lease{Key: k2}, true},
		{Lease{Key: k1, Seniority: 1}, Lease{Key: k1, Seniority: 1}, false},
	} {
		if got := tc.a.Older(tc.b); got != tc.want {
			t.Errorf("%v(%d).Older(%v(%d)) = %v", tc.a.Key, tc.a.Seniority, tc.b.Key, tc.b.Seniority, got)
		}
	}
}
