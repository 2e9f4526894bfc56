// Package netnsutil runs code inside a network namespace.
package netnsutil

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on a thread switched into ns and switches it back. Sockets f
// opens belong to ns for their whole life. If the thread cannot be switched
// back, it stays locked, so that the runtime retires it rather than running
// other goroutines in the wrong namespace.
func Do(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("restore namespace: %w", err) // thread left locked on purpose
	}
	runtime.UnlockOSThread()
	return ferr
}

// InOther reports whether ns names a namespace to switch to. The zero
// NsHandle is descriptor 0, which NsHandle.IsOpen reports as open; it and
// netns.None() both mean the caller's namespace.
func InOther(ns netns.NsHandle) bool { return ns.IsOpen() && ns != 0 }
