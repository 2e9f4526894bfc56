package main

import (
	"bytes"
	"strings"
	"testing"
)

const baseline = `# machine: test
pkg: github.com/weftnet/weft/examples/flanneld
BenchmarkDaemon/peers=1000-2   1   900000000 ns/op   0.14 converge-s   32.0 peak-rss-MiB
BenchmarkDaemon/peers=1000-2   1   800000000 ns/op   0.16 converge-s   33.0 peak-rss-MiB
BenchmarkDaemon/peers=1000-2   1   850000000 ns/op   0.15 converge-s   32.5 peak-rss-MiB
pkg: github.com/weftnet/weft/lease/admit
BenchmarkSnapshot/leases=5000-2   10   47621599 ns/op   384.3 live-B/lease   1000 B/op   20 allocs/op
`

func mustParse(t *testing.T, s string) figures {
	t.Helper()
	f, err := parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCheck: a figure inside its band passes unnamed; one past it is
// named, failing if worse; a benchmark on one side only is listed as not
// judged; the GOMAXPROCS suffix does not keep a run from its baseline.
func TestCheck(t *testing.T) {
	base := mustParse(t, baseline)
	if got := base["github.com/weftnet/weft/examples/flanneld/BenchmarkDaemon/peers=1000 peak-rss-MiB"]; len(got) != 3 {
		t.Fatalf("peak RSS figures = %v, want three", got)
	}
	for _, tc := range []struct {
		name, run string
		ok        bool
		named     []string // in the output
		unnamed   []string // not in it
	}{
		{"same", baseline, true, []string{"within its band"}, []string{"WORSE", "better"}},
		{"RSS up 5%, time up 80%", strings.NewReplacer("32.0 peak", "34.2 peak", "32.5 peak", "34.2 peak", "33.0 peak", "34.2 peak", "0.15 converge", "0.27 converge").Replace(baseline) + "pkg: x\nBenchmarkNew-8 1 5 ns/op\n",
			true, []string{"within its band", "BenchmarkNew (not in the baseline)"}, []string{"WORSE"}},
		{"RSS up 12%", strings.NewReplacer("32.0 peak", "37 peak", "32.5 peak", "37 peak", "33.0 peak", "37 peak").Replace(baseline),
			false, []string{"BenchmarkDaemon/peers=1000 peak-rss-MiB", "32–33", "WORSE"}, []string{"converge-s"}},
		{"converge 2.1 times", strings.NewReplacer("0.14 converge", "0.34 converge", "0.15 converge", "0.34 converge", "0.16 converge", "0.34 converge").Replace(baseline),
			false, []string{"converge-s", "±100%", "WORSE"}, []string{"peak-rss-MiB"}},
		{"allocs down by half, on 8 cores", strings.ReplaceAll(strings.ReplaceAll(baseline, "20 allocs", "10 allocs"), "-2 ", "-8 "),
			true, []string{"allocs/op", "better: take a new baseline"}, []string{"WORSE", "not run"}},
		{"admit left out", baseline[:strings.Index(baseline, "pkg: github.com/weftnet/weft/lease/admit")],
			true, []string{"not run: the baseline's benchmarks of the 1 packages the run left out"}, []string{"WORSE", "(not run)"}},
		{"a benchmark gone", strings.ReplaceAll(baseline, "leases=5000", "leases=9999"),
			true, []string{"BenchmarkSnapshot/leases=5000 (not run)", "BenchmarkSnapshot/leases=9999 (not in the baseline)"}, []string{"WORSE", "left out"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			ok := check(&out, base, mustParse(t, tc.run))
			if ok != tc.ok {
				t.Errorf("check = %v, want %v:\n%s", ok, tc.ok, out.String())
			}
			for _, s := range tc.named {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.unnamed {
				if strings.Contains(out.String(), s) {
					t.Errorf("output has %q:\n%s", s, out.String())
				}
			}
		})
	}
}

func TestBand(t *testing.T) {
	for unit, want := range map[string]float64{
		"peak-rss-MiB": 0.10, "B/op": 0.10, "live-B/lease": 0.10, "allocs/op": 0.10,
		"ns/op": 1.0, "converge-s": 1.0, "new-peer-p99-ms": 1.0, "syncs": 0.25,
	} {
		if got := band(unit); got != want {
			t.Errorf("band(%q) = %v, want %v", unit, got, want)
		}
	}
}

// TestCheckSmallRSS: a resident size of a few MiB gets at least 1 MiB of
// band, and no more.
func TestCheckSmallRSS(t *testing.T) {
	base := mustParse(t, "pkg: p\nBenchmarkH-2 1 5 ns/op 1.1 open-rss-MiB\n")
	for run, want := range map[string]bool{"2.0": true, "2.2": false} {
		var out bytes.Buffer
		if got := check(&out, base, mustParse(t, "pkg: p\nBenchmarkH-2 1 5 ns/op "+run+" open-rss-MiB\n")); got != want {
			t.Errorf("1.1 MiB then %s MiB: check = %v, want %v\n%s", run, got, want, out.String())
		}
	}
}
