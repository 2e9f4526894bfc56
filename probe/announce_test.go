//go:build linux

package probe

import (
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testutil"
)

// simulate runs checks of tg's path, as check does after the small echo
// is answered, against a path carrying carries bytes of overlay, until the
// state settles (SearchRounds+2 checks), recording each through record.
func simulate(p *Prober, tg Target, carries int) Result {
	var r Result
	for range SearchRounds(tg.MTU) + 2 {
		p.mu.Lock()
		ps := p.peerOf[tg.Subnet]
		var sizes []int
		if ps == nil {
			sizes = (&pathState{}).plan(tg)
		} else {
			sizes = ps.path.plan(tg)
		}
		p.mu.Unlock()
		answered := make([]bool, len(sizes))
		for i, size := range sizes {
			answered[i] = size <= carries
		}
		r = Result{Time: time.Now(), Reachable: true, Sent: 1}
		p.mu.Lock()
		if p.peerOf[tg.Subnet] == nil {
			p.peerOf[tg.Subnet] = &peerState{}
		}
		ps = p.peerOf[tg.Subnet]
		ps.path.update(tg, sizes, answered, r.Time, minSize(false))
		r.PathMTU = ps.path.result()
		p.mu.Unlock()
		r.State, r.Diagnosis = diagnose(tg, r)
		r = p.record(tg, r)
	}
	return r
}

// TestBlackHoleSizeChanges: a path whose MTU changes while it is a black
// hole (lowered further, then raised but still short) is logged once per
// size found, each line naming that size; no line says the path carries
// full-size packets while it does not, and the line that does comes once,
// when it does.
func TestBlackHoleSizeChanges(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	tg := Target{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Addr: netip.MustParseAddr("10.244.7.0"),
		PublicIP: netip.MustParseAddr("192.0.2.7"), Node: "c", MTU: 1450, Overhead: 50, Encap: "UDP 8472"}
	p, err := New(Config{Targets: func() []Target { return []Target{tg} }, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		carries int
		state   State
	}{{1450, StateReachable}, {1250, StateMTUBlackHole}, {1100, StateMTUBlackHole}, {1300, StateMTUBlackHole}, {1450, StateReachable}} {
		r := simulate(p, tg, step.carries)
		if r.State != step.state || (step.state == StateMTUBlackHole && (!r.PathMTU.Exact || r.PathMTU.Carries != step.carries)) {
			t.Fatalf("carrying %d: %+v %+v", step.carries, r, r.PathMTU)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "carries full-size packets again"); n != 1 {
		t.Errorf("%d lines saying the path carries full-size packets, want 1 (at the end):\n%s", n, out)
	}
	for _, size := range []int{1250, 1100, 1300} {
		if n := strings.Count(out, "path="+itoa(size+50)); n != 1 {
			t.Errorf("%d black hole lines naming a path of %d bytes, want 1:\n%s", n, size+50, out)
		}
	}
	if n := strings.Count(out, `msg="path MTU black hole"`); n != 3 {
		t.Errorf("%d black hole lines, want 3 (one per size):\n%s", n, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
