package ipam

// Pod records and their markers on disk, and the debris a crash leaves.

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

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

// A restart that keeps its record repairs a marker a kill left missing.
func TestKeptRecordRepairsMarkers(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	web := must(t, a, att("web-1"), pod("web")) // .2
	// As a kill between the record's rename and its markers leaves it.
	os.Remove(filepath.Join(a.s.dir, recordDir, markerName(netip.MustParsePrefix(web).Addr(), recordName(pod("web")))))
	must(t, a, att("web-1"), pod("web")) // the runtime retries
	if m, _ := a.s.markers(); len(m) == 0 {
		t.Errorf("the retried ADD left %s without a marker", web)
	}
	a.Release(att("web-1"), pod("web"))
	a.s.setLastReserved(0, netip.MustParseAddr("10.1.0.1"))
	if got := must(t, a, att("n1"), Pod{}); got == web {
		t.Errorf("n1 took web's remembered %s while .3 was free", got)
	}
}

// Release frees the IP even when the record directory is gone, which
// leaves no spare to keep the file as.
func TestReleaseWithoutRecordDir(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	must(t, a, att("c1"), Pod{})
	os.RemoveAll(filepath.Join(a.s.dir, recordDir))
	if err := a.Release(att("c1"), Pod{}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if got, _ := a.Lookup(att("c1")); len(got) != 0 {
		t.Errorf("c1 still holds %v", got)
	}
}

// A power cut that undoes a DEL's move of a reservation to the spares and
// the next ADD's rename of that spare, but keeps the record written into
// it, leaves the reservation's name over a record's text. That is debris,
// reclaimed, not a reservation of a container named `{"namespace"...`.
func TestRecordTextInAReservation(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	web := must(t, a, att("web-1"), pod("web"))
	x := filepath.Join(a.s.dir, netip.MustParsePrefix(web).Addr().String())
	old, _ := os.ReadFile(x)
	a.Release(att("web-1"), pod("web"))
	must(t, a, att("db-1"), pod("db")) // its record goes into the spare
	rec, _ := os.ReadFile(a.s.recordPath(pod("db")))
	os.Remove(a.s.recordPath(pod("db")))
	os.WriteFile(x, rec[:len(old)], 0o644) // the data survived, not the size
	if got := must(t, a, att("web-2"), pod("web")); got != web {
		t.Errorf("web after the power cut got %s, want its %s", got, web)
	}
	reserved, _ := a.s.reservations()
	for ip, h := range reserved {
		if strings.HasPrefix(h.ContainerID, "{") {
			t.Errorf("%s held by %q", ip, h.ContainerID)
		}
	}
}
