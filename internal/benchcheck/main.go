// Command benchcheck compares a run of `make bench` with the baseline kept
// in the tree, and names every figure that moved past its noise band.
// `make bench-check` runs it:
//
//	benchcheck BASELINE RUN
//
// Both files are `go test -bench` output; lines starting with '#' are
// comments (the baseline's first lines name the machine and the Go
// version it was taken with). A benchmark run several times (-count)
// gives a figure a range; a run's figure is its median, and it has moved
// when it falls outside the baseline's range widened by the band of its
// unit:
//
//   - memory (B/op, and units ending MiB, KiB or naming bytes: peak RSS,
//     live bytes per lease): 10%, and for MiB at least 1 MiB; it depends
//     on the code, not on the machine's load.
//   - allocs/op: 10%.
//   - times (ns/op, and units ending -s, -ms, -us, -ns): 100%, a factor of
//     two either way: they are bound by the kernel and the machine's load,
//     and a loaded machine doubles them.
//   - any other unit: 25%.
//
// A figure worse than its band fails the check (exit status 1); one better
// than its band is named too, as a reason to take a new baseline. Figures
// of benchmarks the run did not include, or the baseline does not have,
// are listed and not judged.
//
// # When to update the baseline
//
// Take a new one (make bench-baseline) when a change moves a figure on
// purpose, and say which figures moved in the commit; when the machine or
// the Go version changes (the baseline names both); and never to make a
// regression pass. Take it with BENCHCOUNT=3 or more, on a machine as
// quiet as the one that will be compared with it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: benchcheck BASELINE RUN")
		os.Exit(2)
	}
	base, err := readFile(os.Args[1])
	if err == nil {
		var run figures
		run, err = readFile(os.Args[2])
		if err == nil {
			if !check(os.Stdout, base, run) {
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintln(os.Stderr, "benchcheck:", err)
	os.Exit(2)
}

// figures maps "pkg/Benchmark unit" to every value reported for it.
type figures map[string][]float64

func readFile(path string) (figures, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	figs, err := parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return figs, nil
}

// parse reads `go test -bench` output. The "-N" GOMAXPROCS suffix is
// dropped from names, so that a run and a baseline taken with different
// core counts still meet (the baseline names its machine).
func parse(r io.Reader) (figures, error) {
	figs := figures{}
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0, strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
		case strings.HasPrefix(fields[0], "Benchmark") && len(fields) >= 4 && len(fields)%2 == 0:
			name := fields[0]
			if j := strings.LastIndexByte(name, '-'); j > 0 {
				if _, err := strconv.Atoi(name[j+1:]); err == nil {
					name = name[:j]
				}
			}
			for i := 2; i+1 < len(fields); i += 2 {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err != nil {
					return nil, fmt.Errorf("%s: value %q of %s is not a number", name, fields[i], fields[i+1])
				}
				key := pkg + "/" + name + " " + fields[i+1]
				figs[key] = append(figs[key], v)
			}
		}
	}
	return figs, sc.Err()
}

// band is how far past the baseline's range a figure of unit may move, as
// a fraction.
func band(unit string) float64 {
	switch {
	case unit == "allocs/op":
		return 0.10
	case unit == "B/op", strings.HasSuffix(unit, "MiB"), strings.HasSuffix(unit, "KiB"),
		strings.Contains(unit, "B/"), strings.HasSuffix(unit, "bytes"):
		return 0.10
	case unit == "ns/op", strings.HasSuffix(unit, "-s"), strings.HasSuffix(unit, "-ms"),
		strings.HasSuffix(unit, "-us"), strings.HasSuffix(unit, "-ns"):
		return 1.0
	}
	return 0.25
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func span(v []float64) string {
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		return strconv.FormatFloat(lo, 'g', 4, 64)
	}
	return strconv.FormatFloat(lo, 'g', 4, 64) + "–" + strconv.FormatFloat(hi, 'g', 4, 64)
}

// check writes what moved, and reports whether nothing got worse. Every
// unit here is better lower.
func check(w io.Writer, base, run figures) bool {
	keys := make([]string, 0, len(run))
	for k := range run {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tbaseline\tthis run\tband\tverdict")
	ok, moved := true, 0
	var unjudged []string
	for _, k := range keys {
		b, have := base[k]
		if !have {
			unjudged = append(unjudged, bench(k)+" (not in the baseline)")
			continue
		}
		unit := k[strings.LastIndexByte(k, ' ')+1:]
		f := band(unit)
		m := median(run[k])
		lo, hi := slices.Min(b)/(1+f), slices.Max(b)*(1+f)
		if strings.HasSuffix(unit, "MiB") {
			// A resident size of a few MiB moves by more than 10%
			// with a page table or a thread's stack.
			lo, hi = min(lo, slices.Min(b)-1), max(hi, slices.Max(b)+1)
		}
		verdict := ""
		switch {
		case m > hi:
			verdict, ok = "WORSE", false
		case m < lo:
			verdict = "better: take a new baseline"
		default:
			continue
		}
		moved++
		fmt.Fprintf(tw, "%s\t%s\t%s\t±%.0f%%\t%s\n", k, span(b), span(run[k]), f*100, verdict)
	}
	// A benchmark of the baseline the run lacks is listed when the run
	// has its package (it went missing), and counted when the whole
	// package was left out (a subset was run).
	ranBench, ranPkg := map[string]bool{}, map[string]bool{}
	for k := range run {
		ranBench[bench(k)], ranPkg[pkgOf(k)] = true, true
	}
	left := map[string]bool{}
	for k := range base {
		switch {
		case ranBench[bench(k)]:
		case ranPkg[pkgOf(k)]:
			unjudged = append(unjudged, bench(k)+" (not run)")
		default:
			left[pkgOf(k)] = true
		}
	}
	if moved > 0 {
		tw.Flush()
	} else {
		fmt.Fprintln(w, "every figure the baseline has is within its band")
	}
	if len(unjudged) > 0 {
		sort.Strings(unjudged)
		unjudged = slices.Compact(unjudged)
		fmt.Fprintf(w, "not judged: %s\n", strings.Join(unjudged, "; "))
	}
	if len(left) > 0 {
		fmt.Fprintf(w, "not run: the baseline's benchmarks of the %d packages the run left out\n", len(left))
	}
	return ok
}

// pkgOf is a figure's package.
func pkgOf(key string) string { return key[:strings.LastIndex(key, "/Benchmark")] }

// bench is a figure's benchmark, without its package path or unit.
func bench(key string) string {
	key = key[:strings.LastIndexByte(key, ' ')]
	return key[strings.LastIndex(key, "/Benchmark")+1:]
}
