package etcd

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/lease"
)

// retrier paces retries of a failing operation with capped, jittered
// exponential backoff, and logs only when the failure changes or recovers,
// so that a long outage costs two log lines, not one per attempt. A wait
// ends early when the connection to etcd comes back after the attempt
// began: an outage must not leave a loop asleep for its longest backoff
// after etcd is back, when a wiped store is waiting to be told this
// node's lease.
type retrier struct {
	m        *Manager
	log      *slog.Logger
	what     string
	delay    time.Duration
	lastErr  string
	failures int
	wake     <-chan struct{} // closed at the first reconnection since the current attempt began
}

const (
	retryMin = 100 * time.Millisecond
	retryMax = 10 * time.Second
)

// fail records err and waits before the next attempt. It returns ctx.Err()
// if ctx ends first.
func (r *retrier) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: not a failure to report
	}
	r.failures++
	r.m.errs.Add(1)
	cond := "etcd unreachable: " + err.Error()
	if answered(err) {
		cond = err.Error() // etcd answered; the trouble is what it holds or whom it lets in
	}
	r.m.setCondition(r.what, cond)
	if msg := err.Error(); msg != r.lastErr {
		if errors.Is(err, ErrIdentityCollision) || refused(err) {
			r.log.Error(r.what+" is waiting", "err", err)
		} else {
			r.log.Warn(r.what+" failed; retrying", "err", err, "attempt", r.failures)
		}
		r.lastErr = msg
	}
	if r.delay == 0 {
		r.delay = retryMin
	} else {
		r.delay = min(2*r.delay, retryMax)
	}
	return r.sleep(ctx, r.delay/2+rand.N(r.delay/2+1))
}

// failFor records err like fail, and waits about d before the next
// attempt.
func (r *retrier) failFor(ctx context.Context, err error, d time.Duration) error {
	if werr := r.fail(ctx, err); werr != nil {
		return werr
	}
	return r.sleep(ctx, d*3/4+rand.N(d/2+1))
}

// sleep waits d, or until ctx is done or the connection comes back; then
// the next attempt begins.
func (r *retrier) sleep(ctx context.Context, d time.Duration) error {
	if err := ctxutil.SleepUntil(ctx, d, r.wake); err != nil {
		return err
	}
	r.wake = r.m.history.reconnected()
	return nil
}

// ok records success, logging recovery after failures.
func (r *retrier) ok() {
	if r.failures > 0 {
		r.log.Info(r.what+" recovered", "after_attempts", r.failures)
		r.m.setCondition(r.what, "")
	}
	*r = retrier{m: r.m, log: r.log, what: r.what, wake: r.m.history.reconnected()}
}

// answered reports whether err is etcd's answer, not the want of one: a
// condition that names it says so, rather than "etcd unreachable".
func answered(err error) bool {
	return errors.Is(err, ErrNoConfig) || errors.Is(err, lease.ErrInvalidConfig) || errors.Is(err, lease.ErrOutOfSubnets) ||
		errors.Is(err, ErrIdentityCollision) || refused(err)
}

// refused reports whether etcd refused this node's credentials or their
// rights: the operator must act, so it is logged as an error.
func refused(err error) bool {
	return errors.Is(err, ErrAuthentication) || errors.Is(rpctypes.Error(err), rpctypes.ErrPermissionDenied)
}

func (m *Manager) retrier(what string) *retrier {
	return &retrier{m: m, log: m.log, what: what, wake: m.history.reconnected()}
}
