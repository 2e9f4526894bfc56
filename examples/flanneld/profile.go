package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// profileEnv names a directory the daemon writes profiles into, for
// finding where its memory and time go (issue 30): a CPU profile from the
// start (cpu-1.pprof), a new one at each SIGUSR1 (cpu-2.pprof, ...); a
// heap profile each time the heap's objects grow a tenth past their
// highest (heap-peak.pprof, the last at the peak); and, at exit, the
// runtime's memory classes at the moment their total was highest
// (memory-peak.txt); all under a directory named by the process's id. A diagnostic only: unset, none of it runs.
const profileEnv = "WEFT_PROFILE_DIR"

// startProfiling starts what profileEnv asks for, and returns what stops
// it and writes the last files.
func startProfiling() (stop func()) {
	dir := os.Getenv(profileEnv)
	if dir == "" {
		return func() {}
	}
	// One directory per process: a test may start several daemons.
	dir = filepath.Join(dir, strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "flanneld: profile:", err)
		return func() {}
	}
	runtime.MemProfileRate = 16 << 10
	n := 1
	startCPU := func() *os.File {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.pprof", n)))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "flanneld: profile:", err)
		}
		n++
		return f
	}
	cpu := startCPU()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	done := make(chan struct{})
	finished := make(chan struct{})
	samples := []metrics.Sample{}
	for _, d := range metrics.All() {
		if len(d.Name) > 16 && d.Name[:16] == "/memory/classes/" {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	peak := map[string]uint64{}
	var peakTotal, peakObjects uint64
	go func() {
		defer close(finished)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-usr1:
				pprof.StopCPUProfile()
				cpu.Close()
				cpu = startCPU()
			case <-tick.C:
				metrics.Read(samples)
				var total, objects uint64
				cur := map[string]uint64{}
				for _, s := range samples {
					v := s.Value.Uint64()
					cur[s.Name] = v
					switch s.Name {
					case "/memory/classes/total:bytes", "/memory/classes/heap/released:bytes":
					default:
						total += v
					}
					if s.Name == "/memory/classes/heap/objects:bytes" {
						objects = v
					}
				}
				if total > peakTotal {
					peakTotal, peak = total, cur
				}
				if objects > peakObjects+peakObjects/10 {
					peakObjects = objects
					if f, err := os.Create(filepath.Join(dir, "heap-peak.pprof")); err == nil {
						pprof.Lookup("heap").WriteTo(f, 0)
						f.Close()
					}
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		pprof.StopCPUProfile()
		cpu.Close()
		f, err := os.Create(filepath.Join(dir, "memory-peak.txt"))
		if err != nil {
			return
		}
		defer f.Close()
		names := make([]string, 0, len(peak))
		for k := range peak {
			names = append(names, k)
		}
		sort.Strings(names)
		if smaps, err := os.ReadFile("/proc/self/smaps_rollup"); err == nil {
			fmt.Fprintf(f, "at exit, /proc/self/smaps_rollup:\n%s\n", smaps)
		}
		if smaps, err := os.ReadFile("/proc/self/smaps"); err == nil {
			fmt.Fprintf(f, "at exit, resident by mapping:\n%s\n", residentByMapping(smaps))
		}
		fmt.Fprintf(f, "peak of the runtime's mapped-and-not-released memory: %.1f MiB\n", float64(peakTotal)/(1<<20))
		for _, k := range names {
			fmt.Fprintf(f, "%-60s %8.2f MiB\n", k, float64(peak[k])/(1<<20))
		}
	}
}

// residentByMapping sums /proc/self/smaps's Rss by the mapping's path
// ("[anon]" for none).
func residentByMapping(smaps []byte) string {
	sums := map[string]int{}
	name := ""
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = "[anon]"
			if len(f) >= 6 {
				name = f[5] + " " + f[1]
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.Atoi(f[1])
			sums[name] += kb
		}
	}
	var b strings.Builder
	for k, v := range sums {
		if v > 0 {
			fmt.Fprintf(&b, "%8d kB  %s\n", v, k)
		}
	}
	return b.String()
}
