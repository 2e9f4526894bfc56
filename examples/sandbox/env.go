package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
)

// env drives the test harnesses outside a test: it collects their cleanups
// and runs them, newest first, on teardown. A harness failure stops the
// goroutine that hit it, like t.Fatal, after recording the error.
type env struct {
	mu       sync.Mutex
	cleanups []func()
	err      error
}

func newEnv() *env { return &env{} }

func (e *env) Helper() {}

func (e *env) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

func (e *env) Errorf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = fmt.Errorf(format, args...)
	}
}

func (e *env) Fatalf(format string, args ...any) {
	e.Errorf(format, args...)
	runtime.Goexit()
}

func (e *env) Fatal(args ...any) { e.Fatalf("%s", fmt.Sprint(args...)) }

func (e *env) Skip(args ...any) { e.Fatalf("cannot run: %s", fmt.Sprint(args...)) }

func (e *env) TempDir() string {
	dir, err := os.MkdirTemp("", "weft-sandbox-")
	if err != nil {
		e.Fatalf("temp dir: %v", err)
	}
	e.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// failed returns the first harness error.
func (e *env) failed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// teardown runs every cleanup, newest first.
func (e *env) teardown() {
	e.mu.Lock()
	c := e.cleanups
	e.cleanups = nil
	e.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// harness runs f, which may stop itself through a harness failure, and
// returns the failure.
func (e *env) harness(f func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
	return e.failed()
}
