// Package testutil holds the small pieces several test harnesses and test
// packages share.
package testutil

import (
	"bytes"
	"context"
	"sync"
	"time"
)

// T is the part of testing.TB the harnesses use. A *testing.T or
// *testing.B satisfies it; so can a program, such as the sandbox, that
// drives a harness outside a test.
type T interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fatal(args ...any)
	Skip(args ...any)
	TempDir() string
}

// Context returns a context that times out after d and is cancelled when
// the test ends.
func Context(t T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond every 20ms until it holds, failing t if d passes
// first.
func WaitFor(t T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// Eventually polls cond every 20ms until it holds, and reports whether it
// did before d passed: WaitFor for a caller whose failure report says
// more than what it waited for (the last state seen, a history).
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers, for collecting
// logs and process output that tests then inspect.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A Sampler runs a check at an interval until Check, collecting what each
// run reports: for conditions that must hold throughout a test, not only
// at its end.
type Sampler struct {
	mu     sync.Mutex
	lapses []string
	stop   chan struct{}
	done   chan struct{}
}

// Sample starts running check every interval; each string it returns is a
// lapse.
func Sample(interval time.Duration, check func() []string) *Sampler {
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(interval):
			}
			if lapses := check(); len(lapses) > 0 {
				s.mu.Lock()
				s.lapses = append(s.lapses, lapses...)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// Check stops the sampling and fails t, saying what, if any run reported a
// lapse.
func (s *Sampler) Check(t T, what string) {
	t.Helper()
	close(s.stop)
	<-s.done
	if len(s.lapses) > 0 {
		t.Errorf("%s %d times; first: %s", what, len(s.lapses), s.lapses[0])
	}
}
