package subnetenv

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writerEnv, when set to a path, turns the test binary into a process that
// rewrites that subnet.env forever, alternating two contents, so that the
// crash test can kill it mid-write.
const writerEnv = "SUBNETENV_TEST_CRASH_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(writerEnv); path != "" {
		runWriter(path)
		return
	}
	os.Exit(m.Run())
}

func runWriter(path string) {
	for i := 0; ; i++ {
		f := v4File
		if i%2 == 1 {
			f = dualFile
		}
		if err := Write(path, f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

// TestCrashLeavesOldOrNew kills a writing process with SIGKILL at random
// moments; every time, the file must read back as one of the two contents.
func TestCrashLeavesOldOrNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	seen := map[bool]int{}
	for round := range 25 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), writerEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("writer did not start: %q, %v", line, err)
		}
		time.Sleep(time.Duration(rand.IntN(20_000)) * time.Microsecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		got, err := Read(path)
		if err != nil {
			t.Fatalf("round %d: after kill -9: %v", round, err)
		}
		if got != v4File && got != dualFile {
			t.Fatalf("round %d: after kill -9 read %+v", round, got)
		}
		seen[got == dualFile]++
	}
	// Leftover temporary files are the only debris a crash may leave.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "subnet.env" && !strings.HasPrefix(e.Name(), ".subnet.env.tmp") {
			t.Errorf("unexpected file %s after crashes", e.Name())
		}
	}
	t.Logf("content after kill: v4 %d times, dual-stack %d times", seen[false], seen[true])
}

// TestConcurrentReadDuringRewrites rewrites subnet.env 1,000 times while
// readers parse it in a loop: no reader may see a missing, empty or partial
// file.
func TestConcurrentReadDuringRewrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	if err := Write(path, v4File); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, failures atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				got, err := Read(path)
				reads.Add(1)
				if err != nil || (got != v4File && got != dualFile) {
					failures.Add(1)
					firstErr.Do(func() { t.Errorf("reader saw %+v, %v", got, err) })
				}
			}
		}()
	}
	for i := range 1000 {
		f := v4File
		if i%2 == 0 {
			f = dualFile
		}
		if err := Write(path, f); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() > 0 {
		t.Errorf("%d of %d reads failed", failures.Load(), reads.Load())
	}
	if reads.Load() < 100 {
		t.Errorf("only %d reads ran concurrently with the writes", reads.Load())
	}
}
