package ipam

// Which sandbox holds an IP: a second interface, a re-created pod, a failed or repeated ADD.

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

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

	os.Remove(filepath.Join(a.s.dir, "last_reserved_ip.0"))
	os.Mkdir(filepath.Join(a.s.dir, "last_reserved_ip.0"), 0o755) // makes the next ADDs fail late
	a.Release(att("a1"), Pod{})
	a.Release(att("filler"), Pod{})
	before := openFiles(t)
	for i := range 10 {
		if _, err := a.Allocate(att(fmt.Sprint("f", i)), pod(fmt.Sprint("f", i))); err == nil {
			t.Fatal("want an error writing last_reserved_ip")
		}
	}
	if after := openFiles(t); after > before {
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

// A record that reads as released long ago (copied without its times, or
// touched) while its sandbox still holds its IP: the reservation is live,
// whatever the record's time says. A new sandbox with no DEL of c1 gets
// another IP; the pod still waits for its first, and gets it back once
// c1's DEL comes.
func TestHeldIPOutranksTheRecordsTime(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	first := must(t, a, att("c1"), pod("web"))
	r, _ := a.s.record(pod("web"))
	os.Chtimes(a.s.recordPath(pod("web")), time.Time{}, r.Updated.Add(time.Minute))
	c.advance(2 * time.Hour) // past the TTL; the pod ran all along
	if got := must(t, a, att("c2"), pod("web")); got == first {
		t.Errorf("c2 took %s, which c1 holds", got)
	}
	if got, _ := a.Lookup(att("c1")); len(got) != 1 {
		t.Errorf("c1 holds %v, want its %s", got, first)
	}
	a.Release(att("c1"), pod("web"))
	a.Release(att("c2"), pod("web"))
	if got := must(t, a, att("c3"), pod("web")); got != first {
		t.Errorf("after the DELs: %s, want %s", got, first)
	}
}

// A pod's second sandbox whose ADD fails leaves the first its IP.
func TestFailedSecondSandboxLeavesTheFirst(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	web := must(t, a, att("web-1"), pod("web"))
	os.Remove(filepath.Join(a.s.dir, "last_reserved_ip.0"))
	os.Mkdir(filepath.Join(a.s.dir, "last_reserved_ip.0"), 0o755) // fails the next ADD late
	if _, err := a.Allocate(att("web-2"), pod("web")); err == nil {
		t.Fatal("want an error writing last_reserved_ip")
	}
	if got, _ := a.Lookup(att("web-1")); len(got) != 1 || got[0].Address.String() != web {
		t.Errorf("after web-2's failed ADD web-1 holds %v, want %s", got, web)
	}
}
