//go:build linux

package agent_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease"
)

// memFactory is a datapath of a backend type the agent has never heard of,
// programming nothing: the agent must drive it through the contract alone.
type memFactory struct {
	mu      sync.Mutex
	setups  []lease.DatapathSetup
	made    []*memDatapath
	checked int
}

func (f *memFactory) Check(s lease.DatapathSetup) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked++
	return nil
}

func (f *memFactory) New(s lease.DatapathSetup) (lease.Datapath, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &memDatapath{data: json.RawMessage(`{"PublicKey":"k","Port":51820}`), onChange: s.OnChange}
	f.setups, f.made = append(f.setups, s), append(f.made, d)
	return d, nil
}

type memDatapath struct {
	mu       sync.Mutex
	data     json.RawMessage
	subnet   netip.Prefix
	onChange func()
}

func (d *memDatapath) BackendData() json.RawMessage { return d.data }
func (d *memDatapath) Run(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}
func (d *memDatapath) SetSubnet(p netip.Prefix) {
	d.mu.Lock()
	d.subnet = p
	d.mu.Unlock()
	d.onChange()
}
func (d *memDatapath) SetUnderlay(netip.Addr, int, netip.Prefix) {}
func (d *memDatapath) SetPeers([]lease.DatapathPeer) error       { return nil }
func (d *memDatapath) SetPeer(lease.DatapathPeer) error          { return nil }
func (d *memDatapath) RemovePeer(netip.Prefix) error             { return nil }
func (d *memDatapath) Close()                                    {}
func (d *memDatapath) Report() lease.DatapathReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	return lease.DatapathReport{Synced: d.subnet.IsValid(), MTU: 1420}
}

// TestNetworkDrivesAnyBackend: the agent runs a backend type it has no code
// for, given its factory: it checks and makes the datapath with the
// underlay it found, publishes the datapath's backend data under the
// config's type in its lease, gives it the held subnet, and announces a
// State with the datapath's MTU once it reports itself synced.
func TestNetworkDrivesAnyBackend(t *testing.T) {
	t.Parallel()
	h, m, quiet, srv := oneHostOn(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "mem", "Port": 51820}}`)
	f := &memFactory{}
	states := make(chan agent.State, 8)
	n := runNetwork(t, agent.NetworkConfig{Datapaths: map[string]lease.DatapathFactory{"mem": f}, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet,
		OnState: func(st agent.State) { states <- st }})
	var st agent.State
	select {
	case st = <-states:
	case <-time.After(15 * time.Second):
		t.Fatal("no State")
	}
	if st.MTU != 1420 {
		t.Errorf("State MTU %d, want the datapath's 1420", st.MTU)
	}
	f.mu.Lock()
	s, d, checked := f.setups[0], f.made[0], f.checked
	f.mu.Unlock()
	if checked != 1 || len(f.made) != 1 || s.IPv6 || s.Public != h.Addr.Addr() || s.Local != h.Addr.Addr() || s.Underlay == 0 || !s.OnLink.Contains(h.Addr.Addr()) || string(s.Backend) != `{"Type": "mem", "Port": 51820}` {
		t.Errorf("setup %+v, checked %d", s, checked)
	}
	d.mu.Lock()
	subnet := d.subnet
	d.mu.Unlock()
	if subnet != st.Lease.Key.IPv4 {
		t.Errorf("the datapath holds subnet %v, the State %v", subnet, st.Lease.Key.IPv4)
	}
	resp, err := srv.Client(t).Get(context.Background(), "/coreos.com/network/subnets/"+st.Lease.Key.String())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the lease in etcd: %v, %v", resp, err)
	}
	var published struct {
		BackendType string
		BackendData json.RawMessage
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &published); err != nil {
		t.Fatal(err)
	}
	if published.BackendType != "mem" || string(published.BackendData) != `{"PublicKey":"k","Port":51820}` {
		t.Errorf("published %s", resp.Kvs[0].Value)
	}
	if snap := n.Snapshot(); !snap.HasState || snap.State.Lease.Key != st.Lease.Key || snap.MTU != 1420 {
		t.Errorf("Snapshot %+v after the State %+v", snap, st)
	}
}
