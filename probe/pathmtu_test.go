package probe

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestPathSearch: against paths carrying every size from the smallest echo
// to the device's MTU, and devices of 1280 to 9000 bytes, a search finds
// the exact size within SearchRounds checks after the one that finds the
// hole, and the state holds small <= lo < hi <= MTU after every check.
func TestPathSearch(t *testing.T) {
	const small = 36
	for _, mtu := range []int{1280, 1450, 1500, 8950, 9000} {
		for carries := small; carries < mtu; carries += 1 + carries/7 {
			tg := Target{MTU: mtu, Overhead: 50}
			var s pathState
			for check := 0; ; check++ {
				sizes := s.plan(tg)
				answered := make([]bool, len(sizes))
				for i, size := range sizes {
					answered[i] = size <= carries
				}
				s.update(tg, sizes, answered, time.Time{}, small)
				if s.ok || s.lo < small || s.lo >= s.hi || s.hi > mtu {
					t.Fatalf("mtu %d carries %d, check %d: state %+v", mtu, carries, check, s)
				}
				if m := s.result(); m.Exact {
					if m.Carries != carries || m.Drops != carries+1 {
						t.Fatalf("mtu %d carries %d: found %+v", mtu, carries, m)
					}
					if check > SearchRounds(mtu) {
						t.Fatalf("mtu %d carries %d: %d checks, bound %d", mtu, carries, check, SearchRounds(mtu))
					}
					break
				}
			}
		}
	}
}

// TestPathSearchRandomLoss: with every echo lost at random (one in five),
// a random history of path sizes keeps the state's invariant after every
// check, never calls a passing device size a hole once it is answered, and
// settles on the exact size once the loss stops.
func TestPathSearchRandomLoss(t *testing.T) {
	const small = 36
	rng := rand.New(rand.NewPCG(1, 2))
	tg := Target{MTU: 1450, Overhead: 50}
	var s pathState
	carries := 1450
	for step := range 20000 {
		if rng.IntN(50) == 0 {
			carries = small + rng.IntN(1450-small+1)
		}
		sizes := s.plan(tg)
		answered := make([]bool, len(sizes))
		for i, size := range sizes {
			answered[i] = size <= carries && rng.IntN(5) != 0
		}
		s.update(tg, sizes, answered, time.Time{}, small)
		switch {
		case answered[0] && !s.ok:
			t.Fatalf("step %d: the full size answered, state %+v", step, s)
		case !s.ok && (s.lo < small || s.lo >= s.hi || s.hi > tg.MTU):
			t.Fatalf("step %d: state %+v", step, s)
		}
	}
	carries = 1000
	for range 3 * SearchRounds(1450) {
		sizes := s.plan(tg)
		answered := make([]bool, len(sizes))
		for i, size := range sizes {
			answered[i] = size <= carries
		}
		s.update(tg, sizes, answered, time.Time{}, small)
	}
	if m := s.result(); !m.Exact || m.Carries != carries {
		t.Errorf("after the loss stopped: %+v, want exactly %d", m, carries)
	}
}

// TestPathStateMTUChange: a device MTU that changes restarts the check.
func TestPathStateMTUChange(t *testing.T) {
	var s pathState
	tg := Target{MTU: 1450, Overhead: 50}
	s.update(tg, s.plan(tg), []bool{false}, time.Time{}, 36)
	if s.ok {
		t.Fatal("a lost full size is not a hole")
	}
	tg.MTU = 1350
	if sizes := s.plan(tg); len(sizes) != 1 || sizes[0] != 1350 {
		t.Errorf("plan after an MTU change: %v, want the new full size alone", sizes)
	}
	s.update(tg, []int{1350}, []bool{true}, time.Time{}, 36)
	if !s.ok || s.result().DeviceMTU != 1350 {
		t.Errorf("state %+v", s)
	}
}
