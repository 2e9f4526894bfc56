package ipam

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A released reservation's file becomes a spare, and the next new pod's
// record is written into it: no new file. A spare that another name links
// is left alone, and the sweep removes what is left over.
func TestSpares(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	dir := filepath.Join(a.s.dir, recordDir)
	spares := func() []string {
		t.Helper()
		_, s, err := a.s.index()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	web := must(t, a, att("web-1"), pod("web"))
	reservation, err := os.Stat(filepath.Join(a.s.dir, netip.MustParsePrefix(web).Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	a.Release(att("web-1"), pod("web"))
	if s := spares(); len(s) != 1 {
		t.Fatalf("spares after a DEL: %v, want the reservation's file", s)
	}
	if reserved, _ := a.s.reservations(); len(reserved) != 0 {
		t.Errorf("a spare reads as a reservation: %v", reserved)
	}

	must(t, a, att("db-1"), pod("db"))
	record, _ := os.Stat(a.s.recordPath(pod("db")))
	if record == nil || !os.SameFile(reservation, record) {
		t.Error("the new pod's record is not written into the spare")
	}
	if r, err := a.s.record(pod("db")); err != nil || r == nil || r.attachment() != att("db-1") || !r.Released.IsZero() {
		t.Errorf("record in a spare: %+v, %v", r, err)
	}
	if s := spares(); len(s) != 0 {
		t.Errorf("spares left: %v", s)
	}

	// A spare that another name links (an attachment link) is not
	// rewritten: it is dropped, and the record gets a file of its own.
	must(t, a, att("x-1"), pod("x"))
	a.Release(att("x-1"), pod("x"))
	s := spares()
	if len(s) != 1 {
		t.Fatalf("spares %v", s)
	}
	other := filepath.Join(t.TempDir(), "link")
	if err := os.Link(filepath.Join(dir, s[0]), other); err != nil {
		t.Fatal(err)
	}
	must(t, a, att("y-1"), pod("y"))
	if data, _ := os.ReadFile(other); string(data) != "x-1\r\neth0" {
		t.Errorf("a linked spare was rewritten: %q", data)
	}
	if r, _ := a.s.record(pod("y")); r == nil {
		t.Error("no record for y")
	}

	// A record torn in a spare by a power cut: the spare's old content,
	// or another pod's record, reads as no record, and the sweep removes
	// it. It keeps maxSpares spares.
	os.WriteFile(a.s.recordPath(pod("y")), []byte("c9\r\neth0"), 0o644)
	if r, _ := a.s.record(pod("y")); r != nil {
		t.Errorf("a reservation's text reads as a record: %+v", r)
	}
	data, _ := os.ReadFile(a.s.recordPath(pod("db")))
	os.WriteFile(a.s.recordPath(pod("web")), data, 0o644)
	if r, _ := a.s.readRecord(recordName(pod("web"))); r != nil {
		t.Errorf("db's record under web's name reads as %+v", r)
	}
	for i := range maxSpares + 4 {
		must(t, a, att(fmt.Sprint("z-", i)), Pod{}) // released by the GC: spares
	}
	if _, err := a.GC([]Attachment{att("db-1")}); err != nil {
		t.Fatal(err)
	}
	if n := len(spares()); n != maxSpares {
		t.Errorf("%d spares after the sweep, want %d", n, maxSpares)
	}
	names, _ := a.s.recordDirNames()
	for _, n := range names {
		if strings.HasPrefix(n, ".") && !strings.HasPrefix(n, sparePrefix) || n == recordName(pod("y")) || n == recordName(pod("web")) {
			t.Errorf("the sweep left %s", n)
		}
	}
}
