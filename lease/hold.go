package lease

import (
	"context"
	"errors"
)

// Hold acquires a lease through m and keeps it until ctx is done, replacing
// it whenever it is lost. onLease is called with every lease Hold obtains,
// the first included, before Hold starts keeping it: that is where a node
// rewrites subnet.env and re-addresses its device.
//
// After a loss Hold asks for the lost subnet as req.Previous, which a
// Manager grants only if no other node holds it, so a node whose lease merely
// lapsed gets its subnet back and a node whose subnet was taken gets another.
// Hold returns ctx.Err() when ctx is done, or the first error that is not a
// loss.
func Hold(ctx context.Context, m Manager, req AcquireRequest, onLease func(Lease)) error {
	for {
		l, err := m.Acquire(ctx, req)
		if err != nil {
			return err
		}
		onLease(l)
		err = m.Keep(ctx, l)
		if !errors.Is(err, ErrLeaseLost) {
			return err
		}
		req.Previous = l.Key
	}
}
