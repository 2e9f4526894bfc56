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
	"github.com/weftnet/weft/lease"
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

// pageBytes is what a page of a listing should hold at most, in keys and
// values. A page is asked for by a number of keys, and etcd cannot bound
// it in bytes: after each page, the next is sized from the bytes a key of
// this one took, so that pages of large values (a writer's padding) are
// few keys each, and pages of leases as flannel writes them (about 250
// bytes) stay at listPage.
const pageBytes = 1 << 20

// listPaged reads every key under prefix as of one revision, in pages,
// calling page with each page's key-values and the total number of keys.
// It returns the revision read. If etcd compacts that revision before the
// last page, listPaged fails with
// rpctypes.ErrCompacted, after some pages were delivered: callers must
// treat what they got as lost and list again.
//
// A value over lease.MaxValueSize is not passed on: page gets it as
// oversized (see trimValue), so that the listing holds no more than a
// page of such values at once, and then none. A page that is over the
// client's receive limit (MaxRecvBytes) is asked for again with fewer
// keys; a key that is over it alone is passed on as oversized, its value
// unread.
func (m *Manager) listPaged(ctx context.Context, prefix string, page func(kvs []*mvccpb.KeyValue, total int64)) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from, rev, total := prefix, int64(0), int64(0)
	limit := int64(listPage)
	floor := m.history.floor()
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit)}
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
		if isTooBig(err) {
			if limit > 1 {
				// Shrunk hard: each refusal costs etcd a page to build.
				limit = max(1, limit/8)
				continue
			}
			// One key over the limit alone: its name is enough.
			resp, err = m.getPage(ctx, from, append(opts, clientv3.WithKeysOnly()), attempts)
			if err == nil {
				for i, kv := range resp.Kvs {
					resp.Kvs[i] = oversized(kv, lease.MaxValueSize, true)
				}
			}
		}
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			m.observe(resp.Header, floor)
			// Later pages count only the keys from where they start.
			rev, total = resp.Header.Revision, resp.Count
		}
		size := 0
		for i, kv := range resp.Kvs {
			size += len(kv.Key) + len(kv.Value)
			resp.Kvs[i] = trimValue(kv)
		}
		kvs := resp.Kvs
		if !resp.More || len(kvs) == 0 {
			page(kvs, total)
			return rev, nil
		}
		// The next key after the last one listed.
		from = string(kvs[len(kvs)-1].Key) + "\x00"
		page(kvs, total)
		limit = nextLimit(limit, len(kvs), size)
	}
}

// nextLimit sizes the page after one of n keys and size bytes asked for
// with limit: to hold about pageBytes at this page's bytes per key, at
// most listPage, and at most twice this one, so that a page of small
// values ahead of large ones does not make the next page huge.
func nextLimit(limit int64, n, size int) int64 {
	fit := int64(listPage)
	if size > 0 {
		fit = max(1, int64(pageBytes)*int64(n)/int64(size))
	}
	return min(fit, 2*limit, listPage)
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
		// Nor does a page over the receive limit.
		if err == nil || attempt >= attempts || ctx.Err() != nil || errors.Is(err, rpctypes.ErrCompacted) || errors.Is(err, rpctypes.ErrFutureRev) || isTooBig(err) {
			return resp, err
		}
		if err := ctxutil.Sleep(ctx, delay/2+rand.N(delay)); err != nil {
			return nil, err
		}
		delay *= 2
	}
}
