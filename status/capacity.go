//go:build linux

package status

import "net/http"

// DefaultCapacity is the status answers a Capacity made by Handler or
// Register lets one server build and write at once.
const DefaultCapacity = 2

// A Capacity bounds the status answers being built and written at once,
// and the on-demand probes: each answer copies every peer it lists, and
// holds its encoding until the client has read it, so that clients
// asking in a loop, or never reading, must not take the node's CPU or
// memory. A request past it is told "busy" at once. Give each server its
// own, so that the clients of one (an open health port) never take
// another's (root's socket).
type Capacity struct{ slots chan struct{} }

// NewCapacity returns a Capacity of n answers at once (n < 1: 1).
func NewCapacity(n int) *Capacity { return &Capacity{slots: make(chan struct{}, max(n, 1))} }

// take takes a slot, or answers "busy" and returns false.
func (c *Capacity) take(w http.ResponseWriter) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "busy: other status requests are being answered; try again"})
		return false
	}
}

func (c *Capacity) release() { <-c.slots }
