package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Regressions found in review, each failing before its fix.

// Another interface of the same sandbox is not a previous sandbox: it gets
// an IP of its own, and eth0 keeps its.
func TestSecondInterfaceKeepsItsOwn(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	eth0 := must(t, a, Attachment{"C", "eth0"}, pod("web"))
	net1 := must(t, a, Attachment{"C", "net1"}, pod("web"))
	if eth0 == net1 {
		t.Errorf("both interfaces of one sandbox got %s", eth0)
	}
	if got, _ := a.Lookup(Attachment{"C", "eth0"}); len(got) != 1 {
		t.Errorf("eth0 holds %v after net1's ADD", got)
	}
	// A repeated ADD of eth0 finds its reservation, though the record now
	// names net1.
	if again := must(t, a, Attachment{"C", "eth0"}, pod("web")); again != eth0 {
		t.Errorf("repeated ADD of eth0: %s, want %s", again, eth0)
	}
}

// A pod re-created under the same name (a new UID: a force-deleted
// StatefulSet pod) does not take the IP of the old pod's sandbox, which
// may still run.
func TestRecreatedPodDoesNotTakeLiveIP(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	old := must(t, a, att("C1"), Pod{Namespace: "default", Name: "db-0", UID: "uid-1"})
	if got := must(t, a, att("C2"), Pod{Namespace: "default", Name: "db-0", UID: "uid-2"}); got == old {
		t.Errorf("the re-created pod took %s from the old pod's sandbox", old)
	}
	if got, _ := a.Lookup(att("C1")); len(got) != 1 {
		t.Errorf("the old sandbox holds %v", got)
	}
}

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

// A failed ADD changes nothing: the previous sandbox keeps its
// reservation, another pod keeps its hint, and no file stays open.
func TestFailedAddChangesNothing(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a0 := newAllocator(t, c, "10.1.0.0/29")
	must(t, a0, att("web-1"), pod("web"))
	must(t, a0, att("q-1"), pod("q"))
	a0.Release(att("q-1"), pod("q"))
	for _, id := range []string{"a1", "a2", "a3"} {
		must(t, a0, att(id), Pod{})
	}
	// IPv4 is full but for q's hint; IPv6 (::2 and ::3) is full.
	a := reopen(t, a0, c, "10.1.0.0/29", "fd00:1::/126")
	for _, ip := range []string{"fd00:1::2", "fd00:1::3"} {
		os.WriteFile(filepath.Join(a.s.dir, ip), []byte("filler\r\neth0"), 0o644)
	}
	for _, id := range []string{"web-2", "n"} {
		// web-2 would take over web-1's IPv4; n would evict q's hint.
		if _, err := a.Allocate(att(id), pod(id[:min(3, len(id))])); err == nil {
			t.Fatalf("%s: IPv6 is full, want an error", id)
		}
	}
	if got, _ := a.Lookup(att("web-1")); len(got) != 1 {
		t.Errorf("after failed ADDs web-1 holds %v", got)
	}
	if r, _ := a.s.record(pod("q")); r == nil || len(r.IPs) == 0 {
		t.Errorf("q's hint was given up for a failed ADD: %+v", r)
	}

	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	os.Remove(filepath.Join(a.s.dir, "last_reserved_ip.0"))
	os.Mkdir(filepath.Join(a.s.dir, "last_reserved_ip.0"), 0o755) // makes the next ADDs fail late
	a.Release(att("a1"), Pod{})
	a.Release(att("filler"), Pod{})
	before := fds()
	for i := range 10 {
		if _, err := a.Allocate(att(fmt.Sprint("f", i)), pod(fmt.Sprint("f", i))); err == nil {
			t.Fatal("want an error writing last_reserved_ip")
		}
	}
	if after := fds(); after > before {
		t.Errorf("%d files left open by 10 failed ADDs", after-before)
	}
}

// A repeated ADD whose pod record cannot be read (damaged) finds the
// reservation it has instead of making a second.
func TestRepeatedAddWithUnreadableRecord(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	first := must(t, a, att("C"), pod("web"))
	os.WriteFile(a.s.recordPath(pod("web")), nil, 0o644)
	if again := must(t, a, att("C"), pod("web")); again != first {
		t.Errorf("repeated ADD: %s, want %s", again, first)
	}
	reserved, _ := a.s.reservations()
	if n := len(reserved); n != 1 {
		t.Errorf("%d reservations for one attachment", n)
	}
}

// A record losing an IP removes only its own marker: another record may
// remember the IP too (after debris was reclaimed), and keeps its marker.
func TestMarkerOfAnotherRecordStays(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/29") // .2-.6
	must(t, a, att("q1"), pod("q"))        // .2
	a.Release(att("q1"), pod("q"))
	for _, id := range []string{"a1", "a2", "a3", "a4"} {
		must(t, a, att(id), Pod{}) // .3-.6
	}
	// A writer died between creating .2 and writing it.
	os.WriteFile(filepath.Join(a.s.dir, "10.1.0.2"), nil, 0o644)
	if got := must(t, a, att("p1"), pod("p")); got != "10.1.0.2/29" {
		t.Fatalf("p got %s, want the reclaimed .2", got)
	}
	a.Release(att("a1"), Pod{})
	must(t, a, att("q2"), pod("q"))
	if m, _ := a.s.markers(); !slices.Contains(m[netip.MustParseAddr("10.1.0.2")], recordName(pod("p"))) {
		t.Error("p's marker for .2 was removed by q's record")
	}
	a.Release(att("p1"), pod("p"))
	a.Release(att("a2"), Pod{})
	a.s.setLastReserved(0, netip.MustParseAddr("10.1.0.1"))
	if got := must(t, a, att("n1"), Pod{}); got == "10.1.0.2/29" {
		t.Error("a new container took p's remembered .2 while .4 was free")
	}
}
