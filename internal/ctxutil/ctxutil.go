// Package ctxutil holds the waits every long-running loop of weft needs:
// a sleep and a channel send that give up when their context is done.
package ctxutil

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, and then returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error { return SleepUntil(ctx, d, nil) }

// SleepUntil is Sleep that also ends, returning nil, when wake is closed
// (a nil wake never is).
func SleepUntil(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	case <-wake:
		return nil
	}
}

// Send delivers v on ch, or gives up when ctx is done and returns
// ctx.Err().
func Send[T any](ctx context.Context, ch chan<- T, v T) error {
	select {
	case ch <- v:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
