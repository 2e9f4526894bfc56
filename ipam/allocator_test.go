package ipam

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// clock is a settable time for hint expiry.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newAllocator(t *testing.T, c *clock, ranges ...string) *Allocator {
	t.Helper()
	var rs []Range
	for _, r := range ranges {
		rs = append(rs, Range{Subnet: netip.MustParsePrefix(r)})
	}
	a, err := New(Config{Dir: filepath.Join(t.TempDir(), "cbr0"), Ranges: rs, HintTTL: time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func reopen(t *testing.T, a *Allocator, c *clock, ranges ...string) *Allocator {
	t.Helper()
	var rs []Range
	for _, r := range ranges {
		rs = append(rs, Range{Subnet: netip.MustParsePrefix(r)})
	}
	b, err := New(Config{Dir: a.s.dir, Ranges: rs, HintTTL: time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func att(id string) Attachment { return Attachment{ContainerID: id, IfName: "eth0"} }

func pod(name string) Pod { return Pod{Namespace: "default", Name: name, UID: "uid-" + name} }

func must(t *testing.T, a *Allocator, at Attachment, p Pod) string {
	t.Helper()
	ips, err := a.Allocate(at, p)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, ip := range ips {
		s = append(s, ip.Address.String())
	}
	return strings.Join(s, ",")
}

func TestAllocateRoundRobin(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/29") // .2-.6 usable: .1 is the gateway, .7 the broadcast
	var got []string
	for _, id := range []string{"c1", "c2", "c3"} {
		got = append(got, must(t, a, att(id), Pod{}))
	}
	if strings.Join(got, " ") != "10.1.0.2/29 10.1.0.3/29 10.1.0.4/29" {
		t.Fatalf("first three: %v", got)
	}
	// Round-robin: a released IP is not the next one handed out.
	if err := a.Release(att("c1"), Pod{}); err != nil {
		t.Fatal(err)
	}
	if got := must(t, a, att("c4"), Pod{}); got != "10.1.0.5/29" {
		t.Errorf("after releasing .2: %s, want .5 (round-robin from the last)", got)
	}
	// A repeated ADD returns the same reservation.
	if got := must(t, a, att("c2"), Pod{}); got != "10.1.0.3/29" {
		t.Errorf("repeated ADD: %s", got)
	}
	must(t, a, att("c5"), Pod{}) // .6
	must(t, a, att("c6"), Pod{}) // wraps to .2
	_, err := a.Allocate(att("c7"), Pod{})
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "no IP addresses available in range 10.1.0.0/29") {
		t.Errorf("exhausted: %v", err)
	}
	ips, _ := a.Allocate(att("c2"), Pod{})
	if ips[0].Gateway != netip.MustParseAddr("10.1.0.1") {
		t.Errorf("gateway %v", ips[0].Gateway)
	}
}

// TestStickyRestart is seed 002's second half: a pod restarted under the
// same namespace and name gets its IP back, after a DEL and a new
// sandbox. A new sandbox with no DEL of the last (its teardown failed, or
// a reboot the runtime has not cleaned up after) gets another IP, since
// the last one's reservation is live until its DEL or a GC; the next
// sandbox after that gets the pod's IP back.
func TestStickyRestart(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	web := must(t, a, att("web-1"), pod("web"))
	must(t, a, att("db-1"), pod("db"))
	if err := a.Release(att("web-1"), Pod{}); err != nil {
		t.Fatal(err)
	}
	// Others come and go meanwhile, round-robin past web's IP.
	for _, id := range []string{"x1", "x2", "x3"} {
		must(t, a, att(id), Pod{})
	}
	if got := must(t, a, att("web-2"), pod("web")); got != web {
		t.Errorf("after DEL and ADD: %s, want %s", got, web)
	}
	// No DEL of web-2: web-3 gets another IP, and web-2 keeps its own.
	if got := must(t, a, att("web-3"), pod("web")); got == web {
		t.Errorf("web-3 took %s, which web-2 holds", web)
	}
	if got, _ := a.Lookup(att("web-2")); len(got) != 1 || got[0].Address.String() != web {
		t.Errorf("web-2 holds %v, want its %s", got, web)
	}
	// The runtime's GC names web-3 alone; web-3's DEL; then the pod is
	// back on its IP.
	if _, err := a.GC([]Attachment{att("web-3")}); err != nil {
		t.Fatal(err)
	}
	a.Release(att("web-3"), pod("web"))
	if got := must(t, a, att("web-4"), pod("web")); got != web {
		t.Errorf("after web-2's GC: %s, want %s", got, web)
	}
	if r, _ := a.s.record(pod("web")); r == nil || len(r.IPs) != 1 {
		t.Errorf("the pod is remembered by %+v, want its one IP", r)
	}
}

// A pod never takes another pod's live IP, even if it remembers it: once
// its hint gave way to another container, it gets another IP.
func TestStickyNeverStealsLive(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/29") // .2-.6
	if got := must(t, a, att("web-1"), pod("web")); got != "10.1.0.2/29" {
		t.Fatalf("web: %s", got)
	}
	a.Release(att("web-1"), Pod{})
	for _, id := range []string{"a1", "a2", "a3", "a4"} {
		if got := must(t, a, att(id), Pod{}); got == "10.1.0.2/29" {
			t.Fatalf("%s took web's remembered IP while others were free", id)
		}
	}
	if got := must(t, a, att("a5"), Pod{}); got != "10.1.0.2/29" {
		t.Fatalf("a5 got %s; the hint should have given way", got)
	}
	a.Release(att("a1"), Pod{})
	if got := must(t, a, att("web-2"), pod("web")); got != "10.1.0.3/29" {
		t.Errorf("web-2 got %s, want the free .3, not a5's .2", got)
	}
}

// Remembered IPs are passed over while others are free, and the oldest
// gives way when none is: stickiness never exhausts a range.
func TestHintsGiveWay(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/29") // 5 usable
	names := []string{"p1", "p2", "p3", "p4", "p5"}
	ips := map[string]string{}
	for _, n := range names {
		ips[n] = must(t, a, att(n+"-1"), pod(n))
	}
	for _, n := range names[:3] {
		c.advance(time.Minute)
		if err := a.Release(att(n+"-1"), Pod{}); err != nil {
			t.Fatal(err)
		}
	}
	// Three free IPs, all remembered: a new pod takes the oldest (p1's).
	if got := must(t, a, att("new-1"), pod("new")); got != ips["p1"] {
		t.Errorf("full of hints: got %s, want the oldest hint %s", got, ips["p1"])
	}
	// p2 still gets its own back; p1 gets what is left.
	if got := must(t, a, att("p2-2"), pod("p2")); got != ips["p2"] {
		t.Errorf("p2: %s, want %s", got, ips["p2"])
	}
	if got := must(t, a, att("p1-2"), pod("p1")); got != ips["p3"] {
		t.Errorf("p1 after losing its hint: %s, want the last free %s", got, ips["p3"])
	}
	u, err := a.Usage()
	if err != nil || u[0].Size != 5 || u[0].Reserved != 5 || u[0].Free() != 0 {
		t.Errorf("usage %+v, %v", u, err)
	}
}

func TestHintExpiry(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	web := must(t, a, att("web-1"), pod("web"))
	a.Release(att("web-1"), Pod{})
	// Without the pod, a DEL touches only reservations: the TTL starts
	// when the store is next swept.
	if _, err := a.sweep(nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.s.record(pod("web")); r == nil || !r.Released.Equal(c.now()) {
		t.Fatalf("record after the release was noticed: %+v", r)
	}
	c.advance(2 * time.Hour) // past the hour's TTL
	if n, err := a.GC(nil); err != nil || n != 0 {
		t.Fatalf("GC: %d, %v", n, err)
	}
	if _, err := os.Stat(a.s.recordPath(pod("web"))); !os.IsNotExist(err) {
		t.Errorf("an expired hint's record is still there: %v", err)
	}
	a.s.setLastReserved(0, netip.MustParseAddr("10.1.0.9"))
	if got := must(t, a, att("web-2"), pod("web")); got == web {
		t.Errorf("an expired hint still gave %s", got)
	}
}

// Dual-stack: one IP per family; a failure in the second rolls the first
// back.
func TestDualStackRollback(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24", "fd00:1::/126") // IPv6: ::2 and ::3 only
	if got := must(t, a, att("c1"), Pod{}); got != "10.1.0.2/24,fd00:1::2/126" {
		t.Fatalf("dual-stack: %s", got)
	}
	must(t, a, att("c2"), Pod{})
	if _, err := a.Allocate(att("c3"), pod("c3")); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "fd00:1::/126") {
		t.Fatalf("IPv6 exhausted: %v", err)
	}
	reserved, _ := a.s.reservations()
	if len(reserved) != 4 {
		t.Errorf("%d reservations after the rollback, want 4: %v", len(reserved), reserved)
	}
	if r, _ := a.s.record(pod("c3")); r != nil {
		t.Errorf("a record was written for the failed ADD: %+v", r)
	}
}

// The node's subnet changes: a reservation outside the new range is a live
// pod's and stays until its DEL or a GC; a hint there waits out its TTL;
// the pod gets an IP in the new range. Going back to the old range, no
// live IP is handed out again.
func TestSubnetChange(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	must(t, a, att("web-1"), pod("web"))
	must(t, a, att("c2"), Pod{})
	a.Release(att("web-1"), Pod{})
	b := reopen(t, a, c, "10.2.0.0/24")
	if got := must(t, b, att("web-2"), pod("web")); got != "10.2.0.2/24" {
		t.Errorf("in the new subnet: %s", got)
	}
	reserved, _ := b.s.reservations()
	want := map[netip.Addr]Attachment{netip.MustParseAddr("10.1.0.3"): att("c2"), netip.MustParseAddr("10.2.0.2"): att("web-2")}
	if !maps.Equal(reserved, want) {
		t.Errorf("reservations after the change: %v, want %v", reserved, want)
	}
	r, _ := b.s.record(pod("web"))
	if r == nil || len(r.IPs) != 1 || r.IPs[0] != netip.MustParseAddr("10.2.0.2") {
		t.Errorf("record after the change: %+v", r)
	}
	// c2 still passes CHECK, and its DEL frees its IP.
	if got, err := b.Lookup(att("c2")); err != nil || len(got) != 1 || got[0].Address != netip.MustParsePrefix("10.1.0.3/32") {
		t.Errorf("Lookup(c2) outside the ranges: %v, %v", got, err)
	}
	back := reopen(t, b, c, "10.1.0.0/24")
	for i := range 5 {
		if got := must(t, back, att(fmt.Sprint("n", i)), Pod{}); got == "10.1.0.3/24" {
			t.Fatalf("c2's live IP was handed out again")
		}
	}
	if err := back.Release(att("c2"), Pod{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := back.Lookup(att("c2")); len(got) != 0 {
		t.Errorf("c2 still holds %v after its DEL", got)
	}
	// A live pod's record outside the ranges survives a sweep (GC with
	// the pod valid), and its DEL by pod frees the IP it names.
	again := reopen(t, back, c, "10.3.0.0/24")
	if n, err := again.GC([]Attachment{att("web-2"), att("n0"), att("n1"), att("n2"), att("n3"), att("n4")}); err != nil || n != 0 {
		t.Fatalf("GC of valid attachments released %d, %v", n, err)
	}
	if err := again.Release(att("web-2"), pod("web")); err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Lookup(att("web-2")); len(got) != 0 {
		t.Errorf("web-2 still holds %v after its DEL", got)
	}
}

func TestGCAndRelease(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	for _, id := range []string{"c1", "c2", "c3"} {
		must(t, a, att(id), pod(id))
	}
	n, err := a.GC([]Attachment{att("c2")})
	if err != nil || n != 2 {
		t.Fatalf("GC released %d, %v; want 2", n, err)
	}
	if got, _ := a.Lookup(att("c2")); len(got) != 1 {
		t.Errorf("GC released a valid attachment")
	}
	// Release of nothing, twice, and of a container never seen.
	for _, at := range []Attachment{att("c1"), att("c1"), att("never")} {
		if err := a.Release(at, Pod{}); err != nil {
			t.Errorf("Release(%v): %v", at, err)
		}
	}
	// GC kept the pods' hints.
	if got := must(t, a, att("c1-2"), pod("c1")); got != "10.1.0.2/24" {
		t.Errorf("after GC, c1's pod got %s", got)
	}
}

// Crash debris: an empty or garbage reservation file (its writer died, or
// a power loss emptied it) is reclaimed; a stale temporary file is
// removed.
func TestReclaimDebris(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/29")
	for ip, content := range map[string]string{"10.1.0.2": "", "10.1.0.3": "\x00\x00\x00", "10.1.0.4": "c-old\r\neth0"} {
		if err := os.WriteFile(filepath.Join(a.s.dir, ip), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(a.s.dir, ".last_reserved_ip.0.tmp123"), []byte("x"), 0o644)
	if got := must(t, a, att("c1"), Pod{}); got != "10.1.0.2/29" {
		t.Errorf("got %s, want the reclaimed .2", got)
	}
	reserved, _ := a.s.reservations()
	if len(reserved) != 2 || reserved[netip.MustParseAddr("10.1.0.4")] != att("c-old") {
		t.Errorf("reservations %v", reserved)
	}
	if _, err := os.Stat(filepath.Join(a.s.dir, ".last_reserved_ip.0.tmp123")); !os.IsNotExist(err) {
		t.Error("a stale temporary file was left")
	}
}

func TestRangeDefaults(t *testing.T) {
	for _, tc := range []struct {
		subnet, start, end, gw string
		size                   uint64
		err                    string
	}{
		{subnet: "10.244.3.0/24", start: "10.244.3.1", end: "10.244.3.254", gw: "10.244.3.1", size: 253},
		{subnet: "10.244.3.1/24", start: "10.244.3.1", end: "10.244.3.254", gw: "10.244.3.1", size: 253}, // FLANNEL_SUBNET's form
		{subnet: "fd00::/64", start: "fd00::1", end: "fd00::ffff:ffff:ffff:ffff", gw: "fd00::1", size: 1<<64 - 2},
		{subnet: "fd00::/120", start: "fd00::1", end: "fd00::ff", gw: "fd00::1", size: 254},
		{subnet: "10.0.0.0/31", err: "holds no address but the gateway"},
	} {
		r, err := Range{Subnet: netip.MustParsePrefix(tc.subnet)}.withDefaults()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.subnet, err, tc.err)
			}
			continue
		}
		if err != nil || r.Start.String() != tc.start || r.End.String() != tc.end || r.Gateway.String() != tc.gw || r.size() != tc.size {
			t.Errorf("%s: %+v size %d, %v", tc.subnet, r, r.size(), err)
		}
	}
	if _, err := (Range{Subnet: netip.MustParsePrefix("10.0.0.0/24"), Start: netip.MustParseAddr("10.0.1.5")}).withDefaults(); err == nil || !strings.Contains(err.Error(), "rangeStart 10.0.1.5 is outside subnet 10.0.0.0/24") {
		t.Errorf("start outside: %v", err)
	}
}

// Without ranges (the subnet file is gone), Release and GC still work and
// drop nothing for being outside an unknown range.
func TestNoRanges(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	must(t, a, att("c1"), pod("c1"))
	must(t, a, att("c2"), Pod{})
	b := reopen(t, a, c)
	if _, err := b.Allocate(att("c3"), Pod{}); err == nil || !strings.Contains(err.Error(), "FLANNEL_SUBNET") {
		t.Errorf("Allocate without ranges: %v", err)
	}
	if n, err := b.GC([]Attachment{att("c1"), att("c2")}); err != nil || n != 0 {
		t.Errorf("GC without ranges released %d, %v", n, err)
	}
	if err := b.Release(att("c1"), Pod{}); err != nil {
		t.Fatal(err)
	}
	reserved, _ := b.s.reservations()
	if len(reserved) != 1 {
		t.Errorf("after releasing c1 without ranges: %v", reserved)
	}
}

// Markers follow the records: each remembered IP has one naming its pod's
// record, a hard link to it (no inode of its own); an IP a pod no longer
// has loses its marker; a stale marker is dropped when met, and GC repairs
// what is missing and prunes what names nothing.
func TestMarkers(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	must(t, a, att("web-1"), pod("web"))
	must(t, a, att("db-1"), pod("db"))
	marked := func() map[netip.Addr][]string {
		t.Helper()
		m, err := a.s.markers()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	dir := filepath.Join(a.s.dir, recordDir)
	web, db := netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("10.1.0.3")
	webRec, dbRec := recordName(pod("web")), recordName(pod("db"))
	if m := marked(); len(m) != 2 || !slices.Equal(m[web], []string{webRec}) || !slices.Equal(m[db], []string{dbRec}) {
		t.Fatalf("markers %v", m)
	}
	marker, _ := os.Lstat(filepath.Join(dir, markerName(web, webRec)))
	record, _ := os.Lstat(filepath.Join(dir, webRec))
	if marker == nil || record == nil || !os.SameFile(marker, record) {
		t.Errorf("web's marker is not a hard link to its record: %v, %v", marker, record)
	}
	if r, err := a.s.hintsFor(web, marked()[web]); err != nil || len(r) != 1 || r[0].Name != "web" {
		t.Errorf("web's marker leads to %+v, %v", r, err)
	}
	// A marker naming a record that does not list the IP is stale.
	stale := markerName(db, webRec)
	os.Link(filepath.Join(dir, webRec), filepath.Join(dir, stale))
	if r, _ := a.s.hintsFor(db, []string{webRec}); len(r) != 0 {
		t.Errorf("a stale marker leads to %+v", r)
	}
	if _, err := os.Lstat(filepath.Join(dir, stale)); !os.IsNotExist(err) {
		t.Errorf("the stale marker was not removed: %v", err)
	}
	// GC puts a lost marker back, and prunes stale ones and names of an
	// older layout.
	os.Remove(filepath.Join(dir, markerName(db, dbRec)))
	os.Link(filepath.Join(dir, webRec), filepath.Join(dir, stale))
	os.Symlink(webRec, filepath.Join(dir, markerPrefix+web.String()))
	if _, err := a.GC([]Attachment{att("web-1"), att("db-1")}); err != nil {
		t.Fatal(err)
	}
	if m := marked(); len(m) != 2 || !slices.Equal(m[db], []string{dbRec}) || !slices.Equal(m[web], []string{webRec}) {
		t.Errorf("after GC, markers %v", m)
	}
	for _, name := range []string{stale, markerPrefix + web.String()} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("GC left %s: %v", name, err)
		}
	}
	// A record deleted (expired) takes its markers along.
	a.Release(att("db-1"), pod("db"))
	c.advance(2 * time.Hour)
	a.sweep(nil)
	if len(marked()[db]) != 0 {
		t.Error("an expired record's marker is still there")
	}
}

// A DEL records the release without rewriting the record (which would
// cost a new file): it stamps the file's modification time, which reads
// back as Released. A release at the very time of the ADD still reads as
// one, and the pod's next ADD makes the record live again.
func TestReleaseStampsRecord(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	stat := func() (os.FileInfo, []byte) {
		t.Helper()
		fi, err := os.Stat(a.s.recordPath(pod("web")))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(a.s.recordPath(pod("web")))
		return fi, data
	}
	must(t, a, att("web-1"), pod("web"))
	written, content := stat()
	if r, _ := a.s.record(pod("web")); r == nil || !r.Released.IsZero() || !written.ModTime().Equal(r.Updated) {
		t.Fatalf("a live record: %+v, modified %v", r, written.ModTime())
	}
	c.advance(time.Minute)
	if err := a.Release(att("web-1"), pod("web")); err != nil {
		t.Fatal(err)
	}
	released, after := stat()
	if !os.SameFile(written, released) || string(after) != string(content) {
		t.Errorf("the DEL rewrote the record: %s", after)
	}
	if r, _ := a.s.record(pod("web")); r == nil || !r.Released.Equal(c.now()) {
		t.Errorf("released record: %+v, want Released %v", r, c.now())
	}
	must(t, a, att("web-2"), pod("web"))
	if r, _ := a.s.record(pod("web")); r == nil || !r.Released.IsZero() {
		t.Errorf("after the next ADD: %+v, want live", r)
	}
	a.Release(att("web-2"), pod("web")) // at the time of the ADD
	if r, _ := a.s.record(pod("web")); r == nil || r.Released.IsZero() {
		t.Errorf("a release at the ADD's time reads as none: %+v", r)
	}
}

// A restart that gets the pod's IPs back keeps the record as it is: the
// new attachment is a hard link to its reservation, which the record's
// readers see.
func TestRestartKeepsRecord(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	first := must(t, a, att("c1"), pod("db-0"))
	path := a.s.recordPath(pod("db-0"))
	before, _ := os.Stat(path)
	content, _ := os.ReadFile(path)
	a.Release(att("c1"), pod("db-0"))
	c.advance(time.Minute)
	if got := must(t, a, att("c2"), pod("db-0")); got != first {
		t.Fatalf("restart: %s, want %s", got, first)
	}
	after, _ := os.Stat(path)
	if data, _ := os.ReadFile(path); !os.SameFile(before, after) || string(data) != string(content) {
		t.Errorf("the restart rewrote the record: %s", data)
	}
	r, err := a.s.record(pod("db-0"))
	if err != nil || r == nil || r.attachment() != att("c2") || !r.Released.IsZero() {
		t.Fatalf("record after the restart: %+v, %v; want live, attached to c2", r, err)
	}
	// c2 never got its DEL: its IP is live, and c3 gets another.
	if got := must(t, a, att("c3"), pod("db-0")); got == first {
		t.Errorf("c3 took %s, which c2 holds", got)
	}
	if got, _ := a.Lookup(att("c2")); len(got) != 1 {
		t.Errorf("c2 holds %v, want its IP", got)
	}
	// Expired, the record takes its attachment link along.
	a.Release(att("c3"), pod("db-0"))
	a.Release(att("c2"), pod("db-0"))
	c.advance(2 * time.Hour)
	if _, err := a.GC(nil); err != nil {
		t.Fatal(err)
	}
	names, _ := a.s.recordDirNames()
	for _, n := range names {
		if strings.HasPrefix(n, attachmentPrefix) {
			t.Errorf("%s outlived its record", n)
		}
	}
}

// An ADD killed after it reserved but before it recorded the attachment
// finds its reservation when retried, and makes no second one.
func TestRestartCutShort(t *testing.T) {
	c := &clock{time.Unix(1e9, 0)}
	a := newAllocator(t, c, "10.1.0.0/24")
	first := must(t, a, att("c1"), pod("db-0"))
	a.Release(att("c1"), pod("db-0"))
	var b syncBatch
	if ok, err := a.s.reserve(&b, netip.MustParsePrefix(first).Addr(), att("c2")); !ok || err != nil {
		t.Fatal(ok, err)
	}
	b.abort()
	if got := must(t, a, att("c2"), pod("db-0")); got != first {
		t.Errorf("retried ADD: %s, want %s", got, first)
	}
	if reserved, _ := a.s.reservations(); len(reserved) != 1 {
		t.Errorf("reservations %v, want one", reserved)
	}
	if r, _ := a.s.record(pod("db-0")); r == nil || r.attachment() != att("c2") {
		t.Errorf("record %+v, want attached to c2", r)
	}
}
