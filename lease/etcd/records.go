package etcd

import (
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
)

// record is one subnet key as read from etcd. Its value is kept raw: most
// callers need only the subnet, and decoding thousands of values would
// dominate Acquire.
type record struct {
	key       lease.Key
	value     []byte
	etcdLease clientv3.LeaseID
	modRev    int64
	createRev int64 // its seniority (lease.Lease.Seniority)
}

// parseKV reads a key under subnets/. It fails only when the key's name is
// not a subnet key; the value is not looked at.
func (m *Manager) parseKV(kv *mvccpb.KeyValue) (record, error) {
	name := strings.TrimPrefix(string(kv.Key), m.subnetsPrefix())
	k, err := lease.ParseKey(name)
	if err != nil {
		return record{}, err
	}
	return record{key: k, value: kv.Value, etcdLease: clientv3.LeaseID(kv.Lease), modRev: kv.ModRevision, createRev: kv.CreateRevision}, nil
}

// parseListing splits a listing of the whole prefix into the raw config and
// the subnet records. Keys that are not subnet keys are logged and skipped.
func (m *Manager) parseListing(kvs []*mvccpb.KeyValue) (config []byte, hasConfig bool, records []record) {
	// Sized once: grown by doubling, tens of thousands of records would
	// be held twice over while the last growth copies them.
	records = make([]record, 0, len(kvs))
	for _, kv := range kvs {
		switch key := string(kv.Key); {
		case key == m.configKey():
			config, hasConfig = kv.Value, true
		case strings.HasPrefix(key, m.subnetsPrefix()):
			r, err := m.parseKV(kv)
			if err != nil {
				m.log.Warn("skipping etcd key that is not a subnet key", "key", key, "err", err)
				continue
			}
			records = append(records, r)
		}
	}
	return config, hasConfig, records
}

// parseConfig parses the config value, naming the key in errors.
func (m *Manager) parseConfig(raw []byte, ok bool) (lease.Config, error) {
	if !ok {
		return lease.Config{}, fmt.Errorf("%w at %s: write one, e.g. etcdctl put %s '{\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}'",
			ErrNoConfig, m.configKey(), m.configKey())
	}
	c, err := lease.ParseConfig(raw)
	if err != nil {
		return lease.Config{}, fmt.Errorf("etcd key %s: %w", m.configKey(), err)
	}
	return c, nil
}

// Config returns the network configuration stored at <prefix>/config.
func (m *Manager) Config(ctx context.Context) (lease.Config, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.client.Get(rctx, m.configKey())
	if err != nil {
		return lease.Config{}, fmt.Errorf("etcd: read %s: %w", m.configKey(), err)
	}
	if len(resp.Kvs) == 0 {
		return m.parseConfig(nil, false)
	}
	return m.parseConfig(resp.Kvs[0].Value, true)
}
