// Package resyncloop is the loop every datapath runs: reconcile after a
// kick (a change of desired state, a kernel notification that departs from
// it) once a short settle has passed, every resync interval, and again with
// backoff while a reconcile fails or peers are failed.
package resyncloop

import (
	"context"
	"log/slog"
	"time"
)

// Settle is how long the loop waits after a kick for more to arrive, so
// that a burst costs one reconcile.
const Settle = 50 * time.Millisecond

// Backoff bounds for a failed reconcile and for failed peers.
const (
	minRetry     = 100 * time.Millisecond
	maxRetry     = 10 * time.Second
	minPeerRetry = 500 * time.Millisecond
	maxPeerRetry = 30 * time.Second
)

// Run reconciles until ctx ends. reconcile returns how many peers it could
// not program (retried with backoff) and an error for a failure of the
// datapath as a whole (retried with backoff, logged when it changes). Its
// argument says whether the pass is a full one (periodic, a retry, the
// first), which must read everything back from the kernel, or one a kick
// asked for, which a datapath may narrow to what changed.
func Run(ctx context.Context, kick <-chan struct{}, resync time.Duration, log *slog.Logger, reconcile func(full bool) (failed int, err error)) error {
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	peerTimer := time.NewTimer(time.Hour)
	peerTimer.Stop()
	pending := true
	settle.Reset(0)
	var retry, peerDelay time.Duration
	lastErr := ""
	full := true // the first pass
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kick:
			if !pending {
				pending = true
				settle.Reset(Settle)
			}
			continue
		case <-settle.C:
			pending = false
		case <-peerTimer.C:
			full = true
		case <-ticker.C:
			full = true
		}
		failed, err := reconcile(full)
		full = false
		if err != nil {
			full = true
			if err.Error() != lastErr {
				log.Error("datapath reconcile failed; retrying", "err", err)
				lastErr = err.Error()
			}
			retry = min(max(2*retry, minRetry), maxRetry)
			pending = true
			settle.Reset(retry)
			continue
		}
		if lastErr != "" {
			log.Info("datapath reconcile recovered")
			lastErr = ""
		}
		retry = 0
		if failed > 0 {
			peerDelay = min(max(2*peerDelay, minPeerRetry), maxPeerRetry)
			peerTimer.Reset(peerDelay)
		} else {
			peerDelay = 0
		}
	}
}
