// Command benchtable turns `go test -bench` output on stdin into one aligned
// table: a row per benchmark, a column per unit (time/op, B/op, allocs/op and
// any custom metric). `make bench` pipes into it. Lines that report a failure
// are passed to stderr and make it exit non-zero.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

type row struct {
	pkg, name string
	values    map[string]string
}

func main() {
	rows, units, header, failed, err := parse(os.Stdin, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	for _, h := range header {
		fmt.Println(h)
	}
	render(os.Stdout, rows, units)
	if failed {
		os.Exit(1)
	}
}

// parse reads benchmark output. It returns the rows, the units in order of
// first appearance, the machine description lines (goos, goarch, cpu), and
// whether any failure was reported.
func parse(r io.Reader, failures io.Writer) (rows []row, units, header []string, failed bool, err error) {
	pkg := ""
	seenUnit := map[string]bool{}
	seenHeader := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
			pkg = pkg[strings.LastIndexByte(pkg, '/')+1:]
		case strings.HasPrefix(line, "goos: "), strings.HasPrefix(line, "goarch: "), strings.HasPrefix(line, "cpu: "):
			if !seenHeader[line] {
				seenHeader[line] = true
				header = append(header, line)
			}
		case strings.HasPrefix(fields[0], "Benchmark") && len(fields) >= 4 && len(fields)%2 == 0:
			rw := row{pkg: pkg, name: strings.TrimPrefix(fields[0], "Benchmark"), values: map[string]string{}}
			for i := 2; i+1 < len(fields); i += 2 {
				unit := fields[i+1]
				rw.values[unit] = format(fields[i], unit)
				if !seenUnit[unit] {
					seenUnit[unit] = true
					units = append(units, unit)
				}
			}
			rows = append(rows, rw)
		case strings.HasPrefix(line, "--- FAIL"), strings.HasPrefix(line, "FAIL"), strings.HasPrefix(line, "panic:"):
			failed = true
			fmt.Fprintln(failures, line)
		}
	}
	trimProcsSuffix(rows)
	return rows, units, header, failed, sc.Err()
}

// trimProcsSuffix drops the "-N" GOMAXPROCS suffix go test appends to every
// benchmark name. It trims only when all names carry the same numeric
// suffix: with GOMAXPROCS=1 there is none, and a name like "size-1024" must
// then survive.
func trimProcsSuffix(rows []row) {
	suffix := ""
	for i, r := range rows {
		j := strings.LastIndexByte(r.name, '-')
		if j < 0 {
			return
		}
		if _, err := strconv.Atoi(r.name[j+1:]); err != nil {
			return
		}
		if i == 0 {
			suffix = r.name[j:]
		} else if r.name[j:] != suffix {
			return
		}
	}
	for i := range rows {
		rows[i].name = strings.TrimSuffix(rows[i].name, suffix)
	}
}

// format makes ns/op and B/op readable; other units pass through.
func format(v, unit string) string {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return v
	}
	switch unit {
	case "ns/op":
		switch {
		case f >= 1e9:
			return fmt.Sprintf("%.2fs", f/1e9)
		case f >= 1e6:
			return fmt.Sprintf("%.2fms", f/1e6)
		case f >= 1e3:
			return fmt.Sprintf("%.1fµs", f/1e3)
		}
		return fmt.Sprintf("%.1fns", f)
	case "B/op":
		switch {
		case f >= 1<<20:
			return fmt.Sprintf("%.1fMiB", f/(1<<20))
		case f >= 1<<10:
			return fmt.Sprintf("%.1fKiB", f/(1<<10))
		}
		return fmt.Sprintf("%.0fB", f)
	}
	return v
}

func render(w io.Writer, rows []row, units []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "package\tbenchmark\t")
	for _, u := range units {
		if u == "ns/op" {
			u = "time/op"
		}
		fmt.Fprint(tw, u, "\t")
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t", r.pkg, r.name)
		for _, u := range units {
			v := r.values[u]
			if v == "" {
				v = "-"
			}
			fmt.Fprint(tw, v, "\t")
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}
