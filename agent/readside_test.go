//go:build linux

package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/lease/etcd"
)

// TestRunTwiceRefused: Run is single-use. A second call, while the first
// runs and after it returned, returns ErrRunTwice at once and leaves the
// running one alone.
func TestRunTwiceRefused(t *testing.T) {
	t.Parallel()
	h, m, quiet := oneHost(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet})
	testutil.WaitFor(t, 15*time.Second, "the node ready", func() bool { ok, _ := n.Ready(); return ok })
	second := make(chan error, 1)
	go func() { second <- n.Run(context.Background()) }()
	select {
	case err := <-second:
		if !errors.Is(err, agent.ErrRunTwice) {
			t.Fatalf("a second Run returned %v, want ErrRunTwice", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second Run ran instead of refusing")
	}
	if ok, why := n.Ready(); !ok {
		t.Errorf("the first Run is not ready after the second was refused: %s", why)
	}
}

// TestSnapshotFollowsChanges: an embedder that reads the Network only by
// Changed and Snapshot sees every step of two nodes coming up, and each
// Snapshot is consistent: the State is the held lease's, no peer is the
// node's own subnet, and a ready node has an MTU and a programmed peer set
// that matches what the other node holds. OnPeers may call Snapshot
// (re-entrancy), and the peers it reports are in it.
func TestSnapshotFollowsChanges(t *testing.T) {
	t.Parallel()
	agents, _ := startAgents(t, 2)
	a, b := agents[0], agents[1]
	ctx := testutil.Context(t, 30*time.Second)
	var seen []agent.Snapshot
	for {
		changed := a.net.Changed()
		s := a.net.Snapshot()
		seen = append(seen, s)
		if s.HasState && (!s.Held || s.State.Lease.Key != s.Lease.Key) {
			t.Fatalf("a State for %v while the Snapshot holds %v (held %v)", s.State.Lease.Key, s.Lease.Key, s.Held)
		}
		for _, p := range s.Peers {
			if s.Held && p.Subnet.Overlaps(s.Lease.Key.IPv4) {
				t.Fatalf("the node's own subnet %v listed as a peer: %+v", s.Lease.Key.IPv4, p)
			}
		}
		if s.Ready && s.MTU == 0 {
			t.Fatalf("ready with no MTU: %+v", s)
		}
		if bl, held := b.net.Lease(); held && s.Ready && s.PeerCounts()[agent.PeerProgrammedState] == 1 {
			if s.Peers[0].Subnet != bl.Key.IPv4 || s.Peers[0].Owner != b.host.Name {
				t.Fatalf("programmed %+v, want %s's %v", s.Peers[0], b.host.Name, bl.Key.IPv4)
			}
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("no Snapshot with the peer programmed; the last: %+v", seen[len(seen)-1])
		}
	}
	if len(seen) < 2 {
		t.Errorf("one Snapshot only: Changed never fired")
	}
}

// TestOnPeersSeesItsChangesInSnapshot: when OnPeers fires, Snapshot (called
// from the callback) already lists each peer it reports.
func TestOnPeersSeesItsChangesInSnapshot(t *testing.T) {
	t.Parallel()
	h, m, quiet, srv := oneHostOn(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	var (
		mu       sync.Mutex
		n        *agent.Network
		problems []string
		calls    int
	)
	ready := make(chan struct{})
	onPeers := func(events []agent.PeerEvent) {
		<-ready
		s := n.Snapshot()
		mu.Lock()
		defer mu.Unlock()
		calls++
		for _, e := range events {
			if e.Kind == agent.PeerProgrammed && !slices.ContainsFunc(s.Peers, func(p agent.PeerState) bool { return p.Subnet == e.Peer.Subnet }) {
				problems = append(problems, "programmed "+e.Peer.Subnet.String()+" missing from the Snapshot")
			}
		}
	}
	n = runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet, OnPeers: onPeers})
	close(ready)
	peer := `{"PublicIP":"172.30.0.200","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:c8:01"},"WeftOwner":"peer"}`
	if _, err := srv.Client(t).Put(context.Background(), "/coreos.com/network/subnets/10.244.200.0-24", peer); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the peer programmed", func() bool {
		return n.Snapshot().PeerCounts()[agent.PeerProgrammedState] == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if calls == 0 || len(problems) > 0 {
		t.Errorf("%d OnPeers calls; %v", calls, problems)
	}
}

// hidingWrapper embeds a Manager and so hides its optional interfaces: the
// mistake the start line exposes.
type hidingWrapper struct{ lease.Manager }

// TestOptionalInterfacesLogged: Run says once, at start, which optional
// interfaces the lease source offers; a wrapper that hides them shows as
// offering none.
func TestOptionalInterfacesLogged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		wrap  func(*etcd.Manager) lease.Manager
		wants []string
	}{
		{"etcd", func(m *etcd.Manager) lease.Manager { return m }, []string{"lease source offers: ", "own-lease read", "expiry", "renewal count", "republish", "endpoints"}},
		{"wrapped", func(m *etcd.Manager) lease.Manager { return hidingWrapper{m} }, []string{"lease source offers none of the optional interfaces", "lacks=", "own-lease read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.SyncBuffer
			m, err := etcd.New(etcd.Options{Endpoints: []string{"http://127.0.0.1:9"}, Node: "n1", Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			n, err := agent.NewNetwork(agent.NetworkConfig{Datapaths: vxlanOnly, Manager: tc.wrap(m), PublicIP: netip.MustParseAddr("192.0.2.1"),
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the start line comes first; nothing else is needed
			n.Run(ctx)
			var line string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "lease source offers") {
					line = l
				}
			}
			for _, w := range tc.wants {
				if !strings.Contains(line, w) {
					t.Errorf("start line %q; want it to say %q", line, w)
				}
			}
		})
	}
}

// endpointsAt is a lease source that reports an endpoint of its choosing:
// an etcd inside the pod network, which one machine's test cannot place.
type endpointsAt struct {
	*etcd.Manager
	at string
}

func (e endpointsAt) Endpoints() []string { return []string{e.at} }

// TestLeaseSourceEndpointsProtected: with no Protected set by the embedder,
// a peer lease whose subnet covers the lease source's endpoint is rejected,
// so that it cannot route the node's way to its control plane into the
// overlay; a lease next to it is admitted.
func TestLeaseSourceEndpointsProtected(t *testing.T) {
	t.Parallel()
	h, m, quiet, srv := oneHostOn(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: endpointsAt{m, "https://10.244.7.5:2379"}, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet})
	admin := srv.Client(t)
	for _, k := range []string{"10.244.7.0-24", "10.244.8.0-24"} {
		v := `{"PublicIP":"172.30.0.20` + k[7:8] + `","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:0` + k[7:8] + `:01"},"WeftOwner":"peer-` + k[7:8] + `"}`
		if _, err := admin.Put(context.Background(), "/coreos.com/network/subnets/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 15*time.Second, "both leases judged", func() bool {
		c := n.Snapshot().PeerCounts()
		return c[agent.PeerRejectedState]+c[agent.PeerProgrammedState] == 2
	})
	for _, p := range n.Snapshot().Peers {
		want := agent.PeerProgrammedState
		if p.Subnet == netip.MustParsePrefix("10.244.7.0/24") {
			want = agent.PeerRejectedState
			if p.Reason != admit.ReasonProtected {
				t.Errorf("%v rejected by %q, want %q", p.Subnet, p.Reason, admit.ReasonProtected)
			}
		}
		if p.State != want {
			t.Errorf("%v is %v, want %v", p.Subnet, p.State, want)
		}
	}
}
