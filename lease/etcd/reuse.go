package etcd

import (
	"bytes"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// listingReuse is how long after Acquire's listing of every lease the
// first WatchLeases snapshot takes it instead of listing again. A starting
// node then reads every lease once, not twice: when a whole cluster
// restarts at once, that halves etcd's reads and what it sends.
const listingReuse = 5 * time.Second

// recentListing is Acquire's last listing, kept for WatchLeases.
type recentListing struct {
	mu    sync.Mutex
	kvs   []*mvccpb.KeyValue
	rev   int64
	epoch <-chan struct{} // the store's history at the listing (continuity.current)
	at    time.Time
}

// keep stores a listing of the network's prefix at rev, made in epoch,
// and forgets it after listingReuse, so that a Manager that never watches
// does not hold it.
func (r *recentListing) keep(kvs []*mvccpb.KeyValue, rev int64, epoch <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kvs, r.rev, r.epoch, r.at = kvs, rev, epoch, time.Now()
	at := r.at
	time.AfterFunc(listingReuse, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.at == at {
			r.kvs, r.epoch = nil, nil
		}
	})
}

// take returns the subnet keys of the kept listing and its revision, if
// it is recent and of the store's history now, and forgets it: it serves
// one snapshot. A watch from just after its revision brings everything
// since, as it would after a listing of its own.
func (r *recentListing) take(subnets []byte, epoch <-chan struct{}) ([]*mvccpb.KeyValue, int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kvs, rev, ok := r.kvs, r.rev, r.kvs != nil && r.epoch == epoch && time.Since(r.at) < listingReuse
	r.kvs, r.epoch = nil, nil
	if !ok {
		return nil, 0, false
	}
	out := make([]*mvccpb.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		if bytes.HasPrefix(kv.Key, subnets) {
			out = append(out, kv)
		}
	}
	return out, rev, true
}
