package ipam

// Sticky hints: expiry without a sweep, coarse file times, two evictions in one ADD.

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A hint expires a TTL after its DEL, without any sweep, and the store
// does not keep every pod name ever seen.
func TestHintExpiresWithoutSweep(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24") // TTL 1h
	web := must(t, a, att("web-1"), pod("web"))
	a.Release(att("web-1"), pod("web"))
	c.advance(2 * time.Hour)
	must(t, a, att("x"), Pod{})
	if got := must(t, a, att("web-2"), pod("web")); got == web {
		t.Errorf("two TTLs after its DEL, web still got its hint %s", got)
	}
}

// A file system that keeps whole seconds (ext4 with 128-byte inodes)
// truncates the record's time and the DEL's stamp alike: a release in the
// second of the ADD still reads as one, and a live record as live.
func TestCoarseTimestamps(t *testing.T) {
	c := &clock{time.Unix(1e9, 5e8)}
	a := newAllocator(t, c, "10.1.0.0/24")
	path := a.s.recordPath(pod("web"))
	truncate := func() {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, time.Time{}, fi.ModTime().Truncate(time.Second))
	}
	must(t, a, att("web-1"), pod("web"))
	truncate()
	if r, _ := a.s.record(pod("web")); r == nil || !r.Released.IsZero() {
		t.Fatalf("a live record reads %+v", r)
	}
	c.advance(300 * time.Millisecond) // the same second
	a.Release(att("web-1"), pod("web"))
	truncate()
	if r, _ := a.s.record(pod("web")); r == nil || r.Released.IsZero() {
		t.Errorf("a DEL 300ms after the ADD reads as none: %+v", r)
	}
}

// Two ranges that evict two IPs of one hint in one ADD: the second
// eviction starts from the first's result, so the hint keeps neither.
func TestTwoEvictionsOfOneHint(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a, err := New(Config{Dir: filepath.Join(t.TempDir(), "cbr0"), Now: c.now, HintTTL: time.Hour, Ranges: []Range{
		{Subnet: netip.MustParsePrefix("10.1.0.0/24"), Start: netip.MustParseAddr("10.1.0.2"), End: netip.MustParseAddr("10.1.0.3")},
		{Subnet: netip.MustParsePrefix("fd00:1::/126")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	must(t, a, att("q1"), pod("q")) // .2, ::2
	must(t, a, att("f1"), Pod{})    // .3, ::3
	a.Release(att("q1"), pod("q"))
	if got := must(t, a, att("p1"), pod("p")); got != "10.1.0.2/24,fd00:1::2/126" {
		t.Fatalf("p got %s, want q's hints", got)
	}
	if r, _ := a.s.record(pod("q")); r != nil && len(r.IPs) != 0 {
		t.Errorf("q still remembers %v, which p holds", r.IPs)
	}
}
