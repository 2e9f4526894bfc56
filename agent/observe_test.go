//go:build linux

package agent_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
)

// observer records what a Network tells its embedder.
type observer struct {
	mu       sync.Mutex
	states   []agent.State
	events   []agent.PeerEvent
	inState  atomic.Int32 // OnState calls running now
	overlaps atomic.Int32 // OnState calls that found another running
	block    time.Duration
}

func (o *observer) onState(st agent.State) {
	if o.inState.Add(1) > 1 {
		o.overlaps.Add(1)
	}
	defer o.inState.Add(-1)
	time.Sleep(o.block) // a slow handler: changes meanwhile are folded in
	o.mu.Lock()
	o.states = append(o.states, st)
	o.mu.Unlock()
}

func (o *observer) onPeers(events []agent.PeerEvent) {
	o.mu.Lock()
	o.events = append(o.events, events...)
	o.mu.Unlock()
}

func (o *observer) lastState() (agent.State, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.states) == 0 {
		return agent.State{}, 0
	}
	return o.states[len(o.states)-1], len(o.states)
}

// event returns the first event of kind for subnet.
func (o *observer) event(kind agent.PeerEventKind, subnet string) (agent.PeerEvent, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.events {
		if e.Kind == kind && e.Peer.Subnet.String() == subnet {
			return e, true
		}
	}
	return agent.PeerEvent{}, false
}

// TestNetworkObserved: OnState gets the lease, the config and the MTU
// once the node is ready, one call at a time, and again when the underlay's
// MTU changes, with nothing polled; OnPeers gets each peer programmed and
// removed, and each rejected lease with its rule, and never this node's
// own lease.
func TestNetworkObserved(t *testing.T) {
	t.Parallel()
	const prefix = "/coreos.com/network"
	h, m, quiet, srv := oneHostOn(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	admin := srv.Client(t)
	o := &observer{block: 100 * time.Millisecond}
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet,
		ResyncInterval: time.Hour, // no periodic pass: what follows is prompted by events alone
		OnState:        o.onState, OnPeers: o.onPeers})

	testutil.WaitFor(t, 15*time.Second, "the first State", func() bool { _, k := o.lastState(); return k > 0 })
	st, _ := o.lastState()
	held, _ := n.Lease()
	if st.Lease.Key != held.Key || st.Config.Network.String() != "10.244.0.0/16" || st.MTU != 1450 {
		t.Fatalf("first State %+v; lease held %v", st, held.Key)
	}
	if ok, why := n.Ready(); !ok {
		t.Errorf("a State was announced while not ready: %s", why)
	}

	// Peers: one honest, one with a multicast VTEP MAC.
	put := func(subnet, value string) {
		k, err := lease.ParseKey(strings.ReplaceAll(subnet, "/", "-"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Put(context.Background(), prefix+"/subnets/"+k.String(), value); err != nil {
			t.Fatal(err)
		}
	}
	put("10.244.200.0/24", `{"PublicIP":"172.30.0.200","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:c8:01"},"WeftOwner":"honest"}`)
	put("10.244.201.0/24", `{"PublicIP":"172.30.0.201","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"},"WeftOwner":"multicast"}`)
	testutil.WaitFor(t, 10*time.Second, "the honest peer programmed", func() bool { _, ok := o.event(agent.PeerProgrammed, "10.244.200.0/24"); return ok })
	e, _ := o.event(agent.PeerProgrammed, "10.244.200.0/24")
	if e.Owner != "honest" || e.IPv6 || e.Peer.PublicIP != netip.MustParseAddr("172.30.0.200") || e.Peer.MAC.String() != "0e:00:00:00:c8:01" {
		t.Errorf("programmed event %+v", e)
	}
	testutil.WaitFor(t, 10*time.Second, "the multicast MAC rejected", func() bool { _, ok := o.event(agent.PeerRejected, "10.244.201.0/24"); return ok })
	if e, _ := o.event(agent.PeerRejected, "10.244.201.0/24"); e.Reason == "" || e.Detail == "" || e.Owner != "multicast" {
		t.Errorf("rejected event %+v", e)
	}
	if _, ok := o.event(agent.PeerProgrammed, "10.244.201.0/24"); ok {
		t.Error("the rejected lease was programmed")
	}
	if _, err := admin.Delete(context.Background(), prefix+"/subnets/10.244.200.0-24"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the honest peer removed", func() bool { _, ok := o.event(agent.PeerRemoved, "10.244.200.0/24"); return ok })
	for _, kind := range []agent.PeerEventKind{agent.PeerProgrammed, agent.PeerRemoved, agent.PeerRejected} {
		if e, ok := o.event(kind, held.Key.IPv4.String()); ok {
			t.Errorf("this node's own lease came as a peer event: %+v", e)
		}
	}

	// The underlay's MTU drops: the device follows, and a State says so.
	_, before := o.lastState()
	link, err := h.Netlink().LinkByName(netnstest.Underlay)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Netlink().LinkSetMTU(link, 1400); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a State with the new MTU", func() bool { st, _ := o.lastState(); return st.MTU == 1350 })
	st, after := o.lastState()
	if st.Lease.Key != held.Key || after != before+1 {
		t.Errorf("after the MTU change: %+v, %d States (was %d): want one more, same lease", st, after, before)
	}
	if o.overlaps.Load() != 0 {
		t.Errorf("%d OnState calls overlapped another", o.overlaps.Load())
	}
}

// hinted is a Manager with the optional interfaces kube's has, over a real
// etcd Manager: hints, a readiness notification and a condition.
type hinted struct {
	*etcd.Manager
	hints lease.Hints
	err   error
	ready atomic.Int32
	cond  atomic.Value
}

func (h *hinted) Hints(context.Context) (lease.Hints, error) { return h.hints, h.err }
func (h *hinted) NetworkReady()                              { h.ready.Add(1) }
func (h *hinted) Condition() string                          { s, _ := h.cond.Load().(string); return s }

// TestNetworkUsesOptionalInterfaces: the Network takes its node from the
// Manager and refuses another; it takes the hinted public IP and VTEP MAC,
// tells the Manager once it is ready, and names the Manager's condition
// in Ready's reason.
func TestNetworkUsesOptionalInterfaces(t *testing.T) {
	t.Parallel()
	h, m, quiet := oneHost(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	if _, err := agent.NewNetwork(agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, Node: "someone-else", PublicIP: h.Addr.Addr()}); err == nil || !strings.Contains(err.Error(), "not the Manager's node") {
		t.Errorf("a Node other than the Manager's: %v", err)
	}
	const mac = "0e:12:34:56:78:9a"
	hm := &hinted{Manager: m, hints: lease.Hints{PublicIP: h.Addr.Addr(), BackendData: []byte(`{"VNI":1,"VtepMAC":"` + mac + `"}`)}}
	hm.cond.Store("waiting for the test")
	n, err := agent.NewNetwork(agent.NetworkConfig{Datapaths: vxlanOnly, Manager: hm, Namespace: h.Handle, Logger: quiet,
		// Found only if the hint were ignored, which would then fail.
		FindPublic: func(bool, bool) (netip.Addr, netip.Addr, error) {
			return netip.MustParseAddr("192.0.2.1"), netip.Addr{}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := n.Ready(); ok || !strings.HasSuffix(why, ": waiting for the test") {
		t.Errorf("Ready before Run: %v %q, want the Manager's condition in the reason", ok, why)
	}
	hm.cond.Store("")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.WaitFor(t, 15*time.Second, "the Manager told the network is ready", func() bool { return hm.ready.Load() > 0 })
	l, _ := n.Lease()
	if l.Attrs.PublicIP != h.Addr.Addr() {
		t.Errorf("published public IP %v, want the hinted %v", l.Attrs.PublicIP, h.Addr.Addr())
	}
	v4 := v4Datapath(n)
	if got := v4.Device().MAC.String(); got != mac {
		t.Errorf("device MAC %s, want the hinted %s", got, mac)
	}
	time.Sleep(300 * time.Millisecond)
	if got := hm.ready.Load(); got != 1 {
		t.Errorf("NetworkReady called %d times for one lease", got)
	}
}

// TestNetworkWaitsForHints: a Manager whose hints cannot be read yet (a
// Node not registered, an API server away) is waited for, saying why on
// Ready, and Run does not return.
func TestNetworkWaitsForHints(t *testing.T) {
	t.Parallel()
	h, m, quiet := oneHost(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	hm := &hinted{Manager: m, err: errors.New(`nodes "x" not found`)}
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: hm, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet})
	testutil.WaitFor(t, 10*time.Second, "the wait for hints on Ready", func() bool {
		_, why := n.Ready()
		return strings.Contains(why, "waiting for this node's settings") && strings.Contains(why, `nodes "x" not found`)
	})
	if _, held := n.Lease(); held {
		t.Error("a lease was acquired before the hints could be read")
	}
}
