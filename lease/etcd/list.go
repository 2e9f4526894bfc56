package etcd

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// listPage is how many keys one request of a paged listing returns. One
// response with every subnet of a large cluster would be held whole in
// memory alongside what is decoded from it, and costs etcd as much to
// build; pages of this size keep both small for a few more round trips.
const listPage = 1000

// listPaged reads every key under prefix as of one revision, in pages,
// calling page with each page's key-values and the total number of keys,
// which it must not keep. It returns the revision read. If etcd compacts
// that revision before the last page, listPaged fails with
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
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Get(rctx, from, opts...)
		cancel()
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
