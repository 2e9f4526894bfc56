package procstat

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// TestRead samples this process around a burst of work and an allocation:
// its CPU time grows by about the burst, and its resident memory and peak
// cover what it holds.
func TestRead(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	busy := time.Now()
	for x := 0; time.Since(busy) < 300*time.Millisecond; x++ {
		_ = x * x
	}
	held := make([]byte, 64<<20)
	for i := range held {
		held[i] = 1 // resident, not just reserved
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(held)
	if d := after.CPU - before.CPU; d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("CPU grew by %v over a 300ms burst", d)
	}
	if after.RSS < 64<<20 || after.Peak < after.RSS {
		t.Errorf("RSS %d, peak %d, holding 64 MiB", after.RSS, after.Peak)
	}
	if share := CPUShare(before, after); share < 0.3 || share > 2.5 {
		t.Errorf("CPU share %.2f over a busy stretch", share)
	}
	if _, err := Read(1 << 30); err == nil {
		t.Error("a process that does not exist was read")
	}
}
