package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/weftnet/weft/lease
cpu: AMD EPYC
BenchmarkAllocatorIPv4/8to24/taken=1000/setup-2    	   20373	     58071 ns/op	  114848 B/op	       4 allocs/op
BenchmarkAllocatorIPv4/8to24/taken=1000/pick-2     	15497095	        85.96 ns/op	       0 B/op	       0 allocs/op
BenchmarkCustom-2    	  10	 2500000 ns/op	 3.5 peers/s
PASS
ok  	github.com/weftnet/weft/lease	18.542s
`

func TestParseAndRender(t *testing.T) {
	var failures bytes.Buffer
	rows, units, header, failed, err := parse(strings.NewReader(sample), &failures)
	if err != nil || failed || failures.Len() != 0 {
		t.Fatalf("err %v failed %v failures %q", err, failed, failures.String())
	}
	if len(header) != 3 || len(rows) != 3 {
		t.Fatalf("header %q rows %d", header, len(rows))
	}
	if got := strings.Join(units, ","); got != "ns/op,B/op,allocs/op,peers/s" {
		t.Errorf("units = %s", got)
	}
	r := rows[0]
	if r.pkg != "lease" || r.name != "AllocatorIPv4/8to24/taken=1000/setup" || r.values["ns/op"] != "58.1µs" || r.values["B/op"] != "112.2KiB" {
		t.Errorf("row 0 = %+v", r)
	}
	var out bytes.Buffer
	render(&out, rows, units)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "time/op") || !strings.Contains(lines[3], "3.5") || !strings.Contains(lines[3], "-") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestProcsSuffix(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"A-2", "B/size-1024-2"}, []string{"A", "B/size-1024"}},
		{[]string{"A", "B/size-1024"}, []string{"A", "B/size-1024"}}, // GOMAXPROCS=1: no suffix
		{[]string{"A/size-16", "B/size-1024"}, []string{"A/size-16", "B/size-1024"}},
	} {
		rows := make([]row, len(tc.in))
		for i, n := range tc.in {
			rows[i].name = n
		}
		trimProcsSuffix(rows)
		for i := range rows {
			if rows[i].name != tc.want[i] {
				t.Errorf("%q: got %q, want %q", tc.in, rows[i].name, tc.want[i])
			}
		}
	}
}

func TestFailuresAreReported(t *testing.T) {
	var failures bytes.Buffer
	_, _, _, failed, _ := parse(strings.NewReader("--- FAIL: BenchmarkX\nFAIL\tpkg\t0.1s\n"), &failures)
	if !failed || !strings.Contains(failures.String(), "--- FAIL: BenchmarkX") {
		t.Errorf("failed=%v failures=%q", failed, failures.String())
	}
}
