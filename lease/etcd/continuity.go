package etcd

import (
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/connectivity"
)

// An etcd can forget: wiped and started empty on the same address, or
// restored from an older backup. Its clients notice nothing by themselves:
// the client resumes every watch from the revision it had reached, and the
// new store stays silent until its own revision catches up, then sends
// events of a different history. So the Manager checks its history
// whenever the connection comes back, with one read: a changed cluster ID
// or a revision lower than one already seen is a discontinuity. Then every
// watch lists afresh (WatchLeases holding back removals until the new
// listing has settled, so that a wipe does not black-hole peers that are
// about to re-assert their keys), and Keep reads its key, so that a key
// the new store lacks is lost at once and acquired again with Acquire's
// conditional create. Keep reads its key on every reconnection, which also
// catches a wipe whose store has already passed the old revision; a
// watch does not: if the new store overtakes the old revision before a
// watcher's connection comes back (a restore from a recent backup, and
// many writes at once), the watcher resumes on it unaware.
type continuity struct {
	mu        sync.Mutex
	clusterID uint64
	maxRev    int64         // the highest revision a completed response showed
	epoch     chan struct{} // closed at a discontinuity, then replaced
	back      chan struct{} // closed when the connection comes back, then replaced
	returns   uint64        // how many times back was closed
	gate      noticeGate    // nil but in tests
}

// A noticeGate orders, in tests, the paths that can notice a store that
// forgot: the real timing decides which runs first (the history check
// after a reconnection, Keep's renewal, Keep's watch ending), and a test
// of every order needs to force each. history may delay a history check;
// watchEnded may skip Keep's read of its key after its watch ended, as
// when the client resumes a watch silently (etcd 3.4 does).
type noticeGate interface {
	history(ctx context.Context)
	watchEnded() bool
}

// setGate installs a noticeGate.
func (c *continuity) setGate(g noticeGate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate = g
}

// beforeHistory lets a gate delay a history check.
func (c *continuity) beforeHistory(ctx context.Context) {
	c.mu.Lock()
	g := c.gate
	c.mu.Unlock()
	if g != nil {
		g.history(ctx)
	}
}

// readAfterWatch reports whether Keep reads its key after its watch
// ended: always, unless a gate says the client resumed it silently.
func (c *continuity) readAfterWatch() bool {
	c.mu.Lock()
	g := c.gate
	c.mu.Unlock()
	return g == nil || g.watchEnded()
}

func newContinuity() *continuity {
	return &continuity{epoch: make(chan struct{}), back: make(chan struct{})}
}

// floor returns the revision every linearizable read started now must
// reach.
func (c *continuity) floor() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxRev
}

// observe records a response header. A linearizable read sees every
// revision completed before it started, so a header below floor, the
// revision known when the read started, or from another cluster, is a
// discontinuity; observe reports it and starts a new epoch.
func (c *continuity) observe(h *etcdserverpb.ResponseHeader, floor int64) (discontinuous bool, was int64) {
	if h == nil {
		return false, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	was = c.maxRev
	if c.clusterID != 0 && h.ClusterId != c.clusterID || floor > 0 && h.Revision < floor {
		discontinuous = true
		close(c.epoch)
		c.epoch = make(chan struct{})
		c.maxRev = h.Revision
	}
	c.clusterID = h.ClusterId
	c.maxRev = max(c.maxRev, h.Revision)
	return discontinuous, was
}

// restart starts a new epoch for a reason seen outside the headers: this
// node's key missing after a reconnection.
func (c *continuity) restart() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.epoch)
	c.epoch = make(chan struct{})
}

// current returns the channel closed at the next discontinuity.
func (c *continuity) current() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// reconnected returns the channel closed when the connection next comes
// back.
func (c *continuity) reconnected() <-chan struct{} {
	ch, _ := c.reconnectedAfter()
	return ch
}

// reconnectedAfter is reconnected, with the number of returns so far: a
// state read at one count may be stale at another.
func (c *continuity) reconnectedAfter() (<-chan struct{}, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.back, c.returns
}

func (c *continuity) signalBack() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.back)
	c.back = make(chan struct{})
	c.returns++
}

// closedChan is a channel that is always ready to receive.
var closedChan = func() <-chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// observe records a completed response's header; see continuity.observe.
func (m *Manager) observe(h *etcdserverpb.ResponseHeader, floor int64) {
	if bad, was := m.history.observe(h, floor); bad {
		m.log.Warn("etcd's history restarted (wiped, or restored from an older backup): re-asserting this node's lease and listing the leases again",
			"revision", h.Revision, "was", was, "cluster_id", h.ClusterId)
	}
}

// watchConnection follows the client's connection until ctx is done, and
// each time it is back after a failure, checks etcd's history.
func (m *Manager) watchConnection(ctx context.Context) {
	conn := m.client.ActiveConnection()
	state := conn.GetState()
	down := true // the first connection counts as a return: it sets the baseline
	for {
		if state == connectivity.Ready && down {
			down = false
			m.checkHistory(ctx)
		}
		if state != connectivity.Ready {
			// Idle and Connecting count too: a connection can come back
			// through them without a TransientFailure in between.
			down = true
		}
		if !conn.WaitForStateChange(ctx, state) {
			return
		}
		if state == connectivity.Ready {
			// It left Ready, however briefly: a reconnection can be
			// over (Idle, Connecting, Ready) before GetState looks.
			down = true
		}
		state = conn.GetState()
	}
}

// checkHistory reads the config key, linearizably, and compares what the
// reply says of the store with what was seen before; then wakes whoever
// waits for a reconnection. A read that fails is retried, with backoff,
// until one succeeds: waking the waiters before the store was compared
// would let them read an old store's answer as the new one's, and a
// single failed read must not hide a wipe.
func (m *Manager) checkHistory(ctx context.Context) {
	retry := m.retrier("check etcd's history after reconnecting")
	m.history.beforeHistory(ctx)
	for {
		floor := m.history.floor()
		rctx, cancel := m.request(ctx)
		resp, err := m.client.Get(rctx, m.configKey())
		cancel()
		if err == nil {
			retry.ok()
			m.observe(resp.Header, floor)
			m.history.signalBack()
			return
		}
		if retry.fail(ctx, err) != nil {
			return
		}
	}
}
