package etcd

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/ctxutil"
)

// listPage is how many keys one request of a paged listing returns. One
// response with every subnet of a large cluster would be held whole in
// memory alongside what is decoded from it, and costs etcd as much to
// build; pages of this size keep both small for a few more round trips.
//
// A page is also the unit of progress when a whole cluster lists at once.
// etcd serves concurrent requests side by side, so each takes as long as
// all of them together: 5,000 agents each asking for all 5,000 leases at
// once ask for 25 million keys, and no one of them gets an answer within
// the request timeout. Each gives up, asks again, and nothing gets
// through, ever (BenchmarkScale, WEFT_SCALE_AGENTS=5000, before pages
// and their retries). A page asked of a herd arrives in time, and a page
// that fails is asked again rather than the listing started over.
const listPage = 500

// pageAttempts is how many times a page after the first is asked for
// before the listing fails. pageRetryDelay is the first wait between attempts,
// doubled each time and jittered, so that a herd's retries spread out.
const (
	pageAttempts   = 4
	pageRetryDelay = 500 * time.Millisecond
)

// listPaged reads every key under prefix as of one revision, in pages,
// calling page with each page's key-values and the total number of keys.
// It returns the revision read. If etcd compacts that revision before the
// last page, listPaged fails with
// rpctypes.ErrCompacted, after some pages were delivered: callers must
// treat what they got as lost and list again.
func (m *Manager) listPaged(ctx context.Context, prefix string, page func(kvs []*mvccpb.KeyValue, total int64)) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from, rev, total := prefix, int64(0), int64(0)
	floor := m.history.floor()
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		// A later page that fails is asked for again: the pages before
		// it are progress. A first page that fails fails the listing
		// at once, for the caller to say so and back off.
		attempts := pageAttempts
		if rev == 0 {
			attempts = 1
		}
		resp, err := m.getPage(ctx, from, opts, attempts)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			m.observe(resp.Header, floor)
			// Later pages count only the keys from where they start.
			rev, total = resp.Header.Revision, resp.Count
		}
		page(resp.Kvs, total)
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		// The next key after the last one listed.
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// getPage reads one page, in up to attempts attempts: it asks again after
// a failure other than one no retry mends, or ctx's end.
func (m *Manager) getPage(ctx context.Context, from string, opts []clientv3.OpOption, attempts int) (*clientv3.GetResponse, error) {
	delay := pageRetryDelay
	for attempt := 1; ; attempt++ {
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Get(rctx, from, opts...)
		cancel()
		// Neither a compacted revision nor one the store has not
		// reached (wiped under the listing) comes back by asking again.
		if err == nil || attempt >= attempts || ctx.Err() != nil || errors.Is(err, rpctypes.ErrCompacted) || errors.Is(err, rpctypes.ErrFutureRev) {
			return resp, err
		}
		if err := ctxutil.Sleep(ctx, delay/2+rand.N(delay)); err != nil {
			return nil, err
		}
		delay *= 2
	}
}
