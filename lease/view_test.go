package lease

import (
	"fmt"
	"net/netip"
	"testing"
)

func viewLease(subnet string, owner string) Lease {
	return Lease{Key: Key{IPv4: netip.MustParsePrefix(subnet)}, Attrs: Attrs{Owner: owner}}
}

func TestView(t *testing.T) {
	a, b, c := viewLease("10.244.1.0/24", "a"), viewLease("10.244.2.0/24", "b"), viewLease("10.244.3.0/24", "c")
	b2 := viewLease("10.244.2.0/24", "b2")
	steps := []struct {
		name   string
		batch  Batch
		want   []Lease
		synced bool
	}{
		{"an incremental batch before any snapshot", Batch{Events: []Event{{Type: Added, Lease: c}}}, []Lease{c}, false},
		{"a snapshot replaces what was known", Batch{Snapshot: true, Events: []Event{{Type: Added, Lease: b}, {Type: Added, Lease: a}}}, []Lease{a, b}, true},
		{"changed replaces by key", Batch{Events: []Event{{Type: Changed, Lease: b2, Prev: &b}}}, []Lease{a, b2}, true},
		{"removed deletes", Batch{Events: []Event{{Type: Removed, Lease: a}}}, []Lease{b2}, true},
		{"removing an unknown key is harmless", Batch{Events: []Event{{Type: Removed, Lease: c}}}, []Lease{b2}, true},
		{"an empty snapshot empties it", Batch{Snapshot: true}, nil, true},
	}
	var v View
	if v.Synced() || v.Len() != 0 || len(v.List()) != 0 {
		t.Fatal("the zero View is not empty")
	}
	for i, s := range steps {
		changed := v.Changed()
		v.Apply(s.batch)
		select {
		case <-changed:
		default:
			t.Errorf("%s: Changed was not closed by Apply", s.name)
		}
		if v.Version() != uint64(i+1) {
			t.Errorf("%s: version %d, want %d", s.name, v.Version(), i+1)
		}
		got := v.List()
		if len(got) != len(s.want) || v.Len() != len(s.want) {
			t.Fatalf("%s: %v, want %v", s.name, got, s.want)
		}
		for j := range got {
			if got[j].Key != s.want[j].Key || got[j].Attrs.Owner != s.want[j].Attrs.Owner {
				t.Errorf("%s: [%d] %v, want %v", s.name, j, got[j], s.want[j])
			}
			if l, ok := v.Get(s.want[j].Key); !ok || l.Attrs.Owner != s.want[j].Attrs.Owner {
				t.Errorf("%s: Get(%v) = %v, %v", s.name, s.want[j].Key, l, ok)
			}
		}
		if v.Synced() != s.synced {
			t.Errorf("%s: synced %v, want %v", s.name, v.Synced(), s.synced)
		}
	}
}

// TestViewSnapshotInParts: a snapshot in parts replaces what the View held
// only at its last part, readers seeing what held before until then; a
// part 0 while parts arrive drops the parts before it.
func TestViewSnapshotInParts(t *testing.T) {
	a, b, c, d := viewLease("10.244.1.0/24", "a"), viewLease("10.244.2.0/24", "b"), viewLease("10.244.3.0/24", "c"), viewLease("10.244.4.0/24", "d")
	var v View
	v.Apply(Batch{Snapshot: true, Events: []Event{{Type: Added, Lease: a}}})
	keys := func() (out []string) {
		for _, l := range v.List() {
			out = append(out, l.Attrs.Owner)
		}
		return out
	}
	for _, s := range []struct {
		name  string
		batch Batch
		want  string
	}{
		{"a first part", Batch{Snapshot: true, More: true, Events: []Event{{Type: Added, Lease: d}}}, "[a]"},
		{"a first part again: the listing began again", Batch{Snapshot: true, More: true, Events: []Event{{Type: Added, Lease: b}}}, "[a]"},
		{"the last part", Batch{Snapshot: true, Part: 1, Events: []Event{{Type: Added, Lease: c}}}, "[b c]"},
	} {
		v.Apply(s.batch)
		if got := fmt.Sprint(keys()); got != s.want {
			t.Errorf("%s: the View holds %s, want %s", s.name, got, s.want)
		}
	}
}
