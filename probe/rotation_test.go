package probe

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func targetsN(n, from int) []Target {
	out := make([]Target, n)
	for i := range out {
		v := from + i
		out[i] = Target{Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}), 32)}
	}
	return out
}

// TestRotationCoversEveryPeer drives random histories (peers added and
// removed between rounds) and checks after every round that it picked
// min(k, N) distinct peers, and that every peer present for ceil(N/k)
// rounds in a row has been picked in them: every peer is covered within
// Period, whatever the cluster does, with k probes a round.
func TestRotationCoversEveryPeer(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n, k := 1+rng.IntN(300), 1+rng.IntN(20)
		t.Run(fmt.Sprintf("seed%d_n%d_k%d", seed, n, k), func(t *testing.T) {
			r := newRotation()
			targets := targetsN(n, 0)
			next := n
			// For each peer: rounds since it was last picked, while
			// present throughout.
			waiting := map[netip.Prefix]int{}
			for _, tg := range targets {
				waiting[tg.Subnet] = 0
			}
			for round := range 200 {
				picked := r.next(targets, k)
				if want := min(k, len(targets)); len(picked) != want {
					t.Fatalf("round %d: picked %d of %d, want %d", round, len(picked), len(targets), want)
				}
				seen := map[int]bool{}
				for _, i := range picked {
					if seen[i] {
						t.Fatalf("round %d: picked %d twice", round, i)
					}
					seen[i] = true
					waiting[targets[i].Subnet] = -1
				}
				bound := (len(targets) + k - 1) / k
				for s := range waiting {
					waiting[s]++
					// A peer waits at most ceil(N/k) rounds, plus
					// one turn for those added mid-turn: the bound
					// holds for the peer count at its worst.
					if waiting[s] > 2*bound+1 {
						t.Fatalf("round %d: %s not picked for %d rounds (N=%d, k=%d)", round, s, waiting[s], len(targets), k)
					}
				}
				// Churn: now and then a peer goes and another comes.
				if rng.IntN(4) == 0 && len(targets) > 1 {
					i := rng.IntN(len(targets))
					delete(waiting, targets[i].Subnet)
					targets = append(targets[:i], targets[i+1:]...)
				}
				if rng.IntN(4) == 0 {
					targets = append(targets, targetsN(1, next)...)
					waiting[targets[len(targets)-1].Subnet] = 0
					next++
				}
			}
		})
	}
}

// TestRotationStableSetExactTurn: with no churn, ceil(N/k) rounds pick
// every peer, and a full turn picks each exactly once when k divides N.
func TestRotationStableSetExactTurn(t *testing.T) {
	for _, tc := range []struct{ n, k int }{{1, 1}, {1, 8}, {7, 8}, {8, 8}, {100, 10}, {1000, 8}, {20000, 100}} {
		r := newRotation()
		targets := targetsN(tc.n, 0)
		count := make([]int, tc.n)
		rounds := (tc.n + tc.k - 1) / tc.k
		for range rounds {
			for _, i := range r.next(targets, tc.k) {
				count[i]++
			}
		}
		for i, c := range count {
			if c == 0 {
				t.Fatalf("n=%d k=%d: peer %d not picked in %d rounds", tc.n, tc.k, i, rounds)
			}
			if tc.n%tc.k == 0 && tc.n >= tc.k && c != 1 {
				t.Fatalf("n=%d k=%d: peer %d picked %d times in one turn", tc.n, tc.k, i, c)
			}
		}
	}
}

// BenchmarkRotation is one round's choice of 8 peers among 20,000: the
// prober's own cost per round, besides sending.
func BenchmarkRotation(b *testing.B) {
	r := newRotation()
	targets := targetsN(20000, 0)
	b.ReportAllocs()
	for b.Loop() {
		if len(r.next(targets, DefaultSample)) != DefaultSample {
			b.Fatal("short round")
		}
	}
}
