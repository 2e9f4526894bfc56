package etcd

import (
	"context"
	"io"

	"github.com/weftnet/weft/lease"
)

// An Observer reads a network from etcd and writes nothing: the network
// config and every node's lease, for a monitor or a status tool that holds
// no lease of its own. It needs no node identity, and it detects a wiped
// or restored etcd as a Manager does (see Options.SettleTime). Its methods
// are safe for concurrent use; Close releases the client if the Observer
// made it.
type Observer struct {
	m *Manager
}

var (
	_ lease.Watcher = (*Observer)(nil)
	_ io.Closer     = (*Observer)(nil)
)

// observerNode stands in for the node an Observer has none of. Nothing is
// ever written under it.
const observerNode = "(observer)"

// NewObserver returns an Observer. opts is read as for New, except that
// Node, TTL, RenewMargin and ChallengeTimeout are ignored.
func NewObserver(opts Options) (*Observer, error) {
	m, err := newManager(opts, true)
	if err != nil {
		return nil, err
	}
	return &Observer{m: m}, nil
}

// Config is Manager.Config.
func (o *Observer) Config(ctx context.Context) (lease.Config, error) { return o.m.Config(ctx) }

// WatchConfig is Manager.WatchConfig.
func (o *Observer) WatchConfig(ctx context.Context, ch chan<- lease.Config) error {
	return o.m.WatchConfig(ctx, ch)
}

// WatchLeases is Manager.WatchLeases: every node's lease.
func (o *Observer) WatchLeases(ctx context.Context, ch chan<- lease.Batch) error {
	return o.m.WatchLeases(ctx, ch)
}

// Stats returns the counters and the current condition. Only Errors and
// Condition count for an Observer.
func (o *Observer) Stats() Stats { return o.m.Stats() }

// Condition implements lease.ConditionReporter.
func (o *Observer) Condition() string { return o.m.Condition() }

// Close is Manager.Close.
func (o *Observer) Close() error { return o.m.Close() }
