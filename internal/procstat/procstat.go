// Package procstat reads a process's CPU time and memory from /proc, for
// benchmarks that measure a server (etcd, kube-apiserver) apart from its
// clients.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, which /proc/<pid>/stat counts CPU time in: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// A Sample is one reading of a process.
type Sample struct {
	Time time.Time
	CPU  time.Duration // user and system time since the process started
	RSS  int64         // resident bytes now (VmRSS)
	Peak int64         // the most resident bytes so far (VmHWM)
}

// Read samples process pid.
func Read(pid int) (Sample, error) {
	s := Sample{Time: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Sample{}, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Sample{}, fmt.Errorf("procstat: /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// utime and stime are fields 14 and 15 of the whole line: 12 and 13
	// after the name, counting the state as 1.
	if len(fields) < 13 {
		return Sample{}, fmt.Errorf("procstat: /proc/%d/stat: %d fields after the name", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return Sample{}, fmt.Errorf("procstat: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	s.CPU = time.Duration(ticks) * time.Second / clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Sample{}, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &s.RSS
		case "VmHWM":
			dst = &s.Peak
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return Sample{}, fmt.Errorf("procstat: /proc/%d/status %s: %w", pid, key, err)
		}
		*dst = kb << 10
	}
	return s, nil
}

// CPUShare is the CPU a process used between two samples, in cores: 1.0
// is one core busy the whole time.
func CPUShare(from, to Sample) float64 {
	wall := to.Time.Sub(from.Time)
	if wall <= 0 {
		return 0
	}
	return float64(to.CPU-from.CPU) / float64(wall)
}
