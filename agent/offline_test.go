//go:build linux

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/localstate"
	"github.com/weftnet/weft/underlay"
)

const offlineConfig = `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`

// offlineHost runs a Network on one host that can be stopped and started
// again, as a reboot would, with a local state that survives.
type offlineHost struct {
	t       *testing.T
	host    *netnstest.Host
	srv     *etcdtest.Server
	store   *localstate.Store
	log     *testutil.SyncBuffer
	simHost *simHost
	stop    func()
	// slowWatch, if set, delays the lease watch of the next start.
	slowWatch time.Duration
}

// slowWatch delays the lease watch's start: a listing that takes long
// (100,000 keys) after the lease is had.
type slowWatch struct {
	lease.Manager
	delay time.Duration
}

func (s *slowWatch) WatchLeases(ctx context.Context, ch chan<- lease.Batch) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Manager.WatchLeases(ctx, ch)
}

func newOfflineHost(t *testing.T, h *netnstest.Host, srv *etcdtest.Server) *offlineHost {
	return &offlineHost{
		t: t, host: h, srv: srv, log: &testutil.SyncBuffer{},
		store: localstate.NewStore(t.TempDir(), localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name}, 0),
	}
}

// start runs the host's Network, with a fresh Manager, until stop.
func (o *offlineHost) start() *simHost {
	o.t.Helper()
	logger := slog.New(slog.NewTextHandler(o.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A TTL long enough that no renewal falls inside a test, so that
	// every etcd write is one the test can account for.
	m, err := etcd.New(etcd.Options{Endpoints: []string{o.srv.Endpoint()}, Node: o.host.Name, TTL: 10 * time.Minute, RenewMargin: time.Minute, Logger: logger})
	if err != nil {
		o.t.Fatal(err)
	}
	a := &simHost{host: o.host}
	var src lease.Manager = m
	if o.slowWatch > 0 {
		src = &slowWatch{Manager: m, delay: o.slowWatch}
	}
	a.net, err = agent.NewNetwork(agent.NetworkConfig{
		Datapaths: vxlanOnly,
		Manager:   src, PublicIP: o.host.Addr.Addr(), Namespace: o.host.Handle, Logger: logger,
		OnState: func(st agent.State) {
			// A restart at this moment boots from the local state, so
			// it must not hold a lease other than the one announced
			// (it may hold none yet).
			if on, err := o.store.Load(); err == nil && on.Lease.Key != st.Lease.Key {
				o.t.Errorf("State %s announced while the local state holds %s", st.Lease.Key, on.Lease.Key)
			}
			a.record(st)
		},
		LocalState: o.store, OfflineAfter: time.Second,
	})
	if err != nil {
		o.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.net.Run(ctx) }()
	stopped := false
	o.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != context.Canceled {
			o.t.Errorf("Run returned %v", err)
		}
		m.Close()
	}
	o.t.Cleanup(o.stop)
	o.simHost = a
	return a
}

// reboot stops the Network and deletes what a reboot loses: the device,
// and with it every route, neighbour and FDB entry.
func (o *offlineHost) reboot() {
	o.t.Helper()
	o.stop()
	if link, err := o.host.Netlink().LinkByName("flannel.1"); err == nil {
		if err := o.host.Netlink().LinkDel(link); err != nil {
			o.t.Fatal(err)
		}
	}
}

// waitSaved waits until the local state holds peers peers.
func (o *offlineHost) waitSaved(peers int) localstate.State {
	o.t.Helper()
	var st localstate.State
	waitUntil(o.t, 15*time.Second, "the local state to hold the peers", func() bool {
		var err error
		st, err = o.store.Load()
		return err == nil && len(st.Peers) == peers
	})
	return st
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNetworkBootsOffline: three hosts run with traffic flowing; etcd
// stops; one host reboots (its device, routes, neighbours and FDB entries
// gone) and starts again while etcd is still down. From its local state
// it programs the other two within OfflineAfter, announces its State, and
// says on Ready that it runs from the state; traffic flows both ways.
// When etcd is back it runs on etcd again with no etcd write and no
// kernel change: its lease and peers were right.
func TestNetworkBootsOffline(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	admin := srv.Client(t)
	if _, err := admin.Put(context.Background(), "/coreos.com/network/config", offlineConfig); err != nil {
		t.Fatal(err)
	}
	seg := netnstest.NewSegment(t, 3)
	hosts := make([]*offlineHost, 3)
	agents := make([]*simHost, 3)
	for i, h := range seg.Hosts {
		hosts[i] = newOfflineHost(t, h, srv)
		agents[i] = hosts[i].start()
	}
	waitReady(t, agents)
	a := hosts[0]
	saved := a.waitSaved(2)
	if fi, err := os.Stat(a.store.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file %v, %v; want mode 0600", fi, err)
	}
	if saved.Lease.Key != agents[0].current().Key || saved.VtepMAC == "" || saved.Lease.Expiration.IsZero() {
		t.Errorf("saved %+v; the node holds %v", saved, agents[0].current().Key)
	}
	resp, err := admin.Get(context.Background(), "/none")
	if err != nil {
		t.Fatal(err)
	}
	revision := resp.Header.Revision

	srv.Stop()
	a.reboot()
	booted := time.Now()
	agents[0] = a.start()
	waitUntil(t, 10*time.Second, "the rebooted host to be ready from its local state", func() bool {
		ok, _ := agents[0].net.Ready()
		return ok && len(agents[0].leaseHistory()) > 0
	})
	t.Logf("rebooted with etcd down: ready from the local state %v after start (OfflineAfter 1s)", time.Since(booted).Round(time.Millisecond))
	if _, why := agents[0].net.Ready(); !strings.Contains(why, "running from the local state since") {
		t.Errorf("Ready's reason %q does not say the node runs from its local state", why)
	}
	if off, ok := agents[0].net.Offline(); !ok || !off.Lease || !off.Peers {
		t.Errorf("Offline() = %+v, %v", off, ok)
	}
	if got := agents[0].current().Key; got != saved.Lease.Key {
		t.Fatalf("booted on %v, the state holds %v", got, saved.Lease.Key)
	}
	for _, other := range agents[1:] {
		if err := reach(t, agents[0], other); err != nil {
			t.Fatalf("%s -> %s with etcd down: %v", a.host.Name, other.host.Name, err)
		}
		if err := reach(t, other, agents[0]); err != nil {
			t.Fatalf("%s -> %s with etcd down: %v", other.host.Name, a.host.Name, err)
		}
	}

	changes := a.host.WatchKernel(t)
	srv.Restart()
	waitUntil(t, 20*time.Second, "the rebooted host to run on etcd again", func() bool {
		_, off := agents[0].net.Offline()
		ok, _ := agents[0].net.Ready()
		return ok && !off
	})
	time.Sleep(2 * time.Second) // a reconcile after the listing
	if seen := changes(); len(seen) > 0 {
		t.Errorf("reconnecting changed the kernel %d times: %v", len(seen), seen)
	}
	resp, err = admin.Get(context.Background(), "/none")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != revision {
		t.Errorf("etcd revision %d after the reconnection, %d before the reboot: needless writes", resp.Header.Revision, revision)
	}
	if !strings.Contains(a.log.String(), "written=false") {
		t.Errorf("the lease was not taken as it was:\n%s", a.log)
	}
	for _, other := range agents[1:] {
		if err := reach(t, agents[0], other); err != nil {
			t.Fatalf("%s -> %s after the reconnection: %v", a.host.Name, other.host.Name, err)
		}
	}
}

// TestNetworkLeaseLostWhileAway: while a host is down its key goes and
// another node takes its subnet. It reboots with etcd down and runs from
// its local state; once etcd answers it moves to a new subnet, tells its
// embedder, and leaves the other node's key alone.
func TestNetworkLeaseLostWhileAway(t *testing.T) {
	t.Parallel()
	w := loseLeaseWhileAway(t, 0)
	waitReady(t, []*simHost{w.ag})
	if !strings.Contains(w.a.log.String(), "is no longer its own") {
		t.Errorf("the move was not logged:\n%s", w.a.log)
	}
	resp, err := w.admin.Get(context.Background(), w.key)
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != w.other || resp.Kvs[0].ModRevision != w.put.Header.Revision {
		t.Errorf("the other node's key after the move: %+v, %v", resp, err)
	}
	w.a.waitSaved(1) // the other node's lease is a peer now
	if st, _ := w.a.store.Load(); st.Lease.Key == w.lost {
		t.Errorf("the local state still holds the lost lease %v", st.Lease.Key)
	}
}

// lostWhileAway is a host that lost its subnet while it was down (see
// loseLeaseWhileAway), and what the test needs to check it by.
type lostWhileAway struct {
	a     *offlineHost
	ag    *simHost
	admin *clientv3.Client
	lost  lease.Key // the subnet the local state holds, now another node's
	key   string    // its etcd key
	other string    // the other node's value there
	put   *clientv3.PutResponse
}

// loseLeaseWhileAway runs a host until its local state is saved, reboots
// it, gives its subnet to another node while it is down, starts it with
// etcd down (it runs from its local state), and brings etcd back: it
// returns once the host holds another subnet. slowWatch delays the host's
// peer listing after that start (0: none).
func loseLeaseWhileAway(t *testing.T, slowWatch time.Duration) lostWhileAway {
	t.Helper()
	srv := etcdtest.Start(t)
	w := lostWhileAway{admin: srv.Client(t)}
	if _, err := w.admin.Put(context.Background(), "/coreos.com/network/config", offlineConfig); err != nil {
		t.Fatal(err)
	}
	seg := netnstest.NewSegment(t, 1)
	w.a = newOfflineHost(t, seg.Hosts[0], srv)
	waitReady(t, []*simHost{w.a.start()})
	w.lost = w.a.waitSaved(0).Lease.Key
	w.a.reboot()

	w.key = "/coreos.com/network/subnets/" + w.lost.String()
	w.other = `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"},"WeftOwner":"other"}`
	if _, err := w.admin.Delete(context.Background(), w.key); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.put, err = w.admin.Put(context.Background(), w.key, w.other); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	w.a.slowWatch = slowWatch
	w.ag = w.a.start()
	waitUntil(t, 10*time.Second, "the host to be ready from its local state", func() bool {
		ok, _ := w.ag.net.Ready()
		return ok && len(w.ag.leaseHistory()) > 0
	})
	srv.Restart()
	waitUntil(t, 20*time.Second, "the host to move off the subnet it lost", func() bool {
		h := w.ag.leaseHistory()
		return len(h) == 2 && h[1].Key != w.lost
	})
	return w
}

// TestReplacedLeaseLeavesNoStaleState: a host booted from its local state
// is given another lease once etcd answers, while its peer listing is
// still to come (it takes seconds at 100,000 keys). From the State of the
// new lease on, the local state must not hold the old one: a reboot with
// etcd down would boot from a subnet etcd gave another node.
func TestReplacedLeaseLeavesNoStaleState(t *testing.T) {
	t.Parallel()
	w := loseLeaseWhileAway(t, 4*time.Second)
	// The check is in start's OnState; and now, before the listing.
	if st, err := w.a.store.Load(); err == nil && st.Lease.Key == w.lost {
		t.Errorf("after the move, the local state still holds the lost lease %v", st.Lease.Key)
	}
}

// TestNetworkIgnoresUnusableState: a local state that is corrupt, of
// another network, older than its maximum age or holding an expired lease
// is logged, naming the file and why, and the node waits for the control
// plane as if it had none.
func TestNetworkIgnoresUnusableState(t *testing.T) {
	t.Parallel()
	h := netnstest.NewSegment(t, 1).Hosts[0]
	good := localstate.State{
		Identity: localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name},
		Config:   []byte(offlineConfig),
		Lease: lease.Lease{Key: mustKey("10.244.5.0-24"), Attrs: lease.Attrs{PublicIP: h.Addr.Addr(), BackendType: "vxlan", Owner: h.Name,
			BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:05:01"}`)}},
	}
	for _, tt := range []struct {
		name  string
		write func(t *testing.T, dir string)
		want  string
	}{
		{"truncated", func(t *testing.T, dir string) {
			store := localstate.NewStore(dir, good.Identity, 0)
			if _, err := store.Save(good); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(store.Path())
			os.WriteFile(store.Path(), data[:len(data)/2], 0o600)
		}, "corrupt state file"},
		{"another network", func(t *testing.T, dir string) {
			other := good
			other.Network = "etcd /other/network"
			data, _ := localstate.Encode(other)
			os.WriteFile(localstate.Path(dir, good.Identity), data, 0o600)
		}, "state file of another network or node"},
		{"too old", func(t *testing.T, dir string) {
			old := good
			old.Written = time.Now().Add(-8 * 24 * time.Hour)
			data, _ := localstate.Encode(old)
			os.WriteFile(localstate.Path(dir, good.Identity), data, 0o600)
		}, "state file too old to use"},
		{"lease expired", func(t *testing.T, dir string) {
			expired := good
			expired.Written = time.Now().Add(-2 * time.Hour)
			expired.Lease.Expiration = time.Now().Add(-time.Hour)
			data, _ := localstate.Encode(expired)
			os.WriteFile(localstate.Path(dir, good.Identity), data, 0o600)
		}, "the cached lease 10.244.5.0-24 expired"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.write(t, dir)
			log := &testutil.SyncBuffer{}
			logger := slog.New(slog.NewTextHandler(log, nil))
			// An etcd that never answers: a port nothing listens on.
			m, err := etcd.New(etcd.Options{Endpoints: []string{"http://127.0.0.1:9"}, Node: h.Name, Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: logger,
				LocalState: localstate.NewStore(dir, good.Identity, 0), OfflineAfter: 200 * time.Millisecond})
			time.Sleep(time.Second)
			if ok, why := n.Ready(); ok || !strings.Contains(why, "waiting for the network config") {
				t.Errorf("Ready = %v, %q; want waiting for the network config", ok, why)
			}
			out := log.String()
			if !strings.Contains(out, "ignoring the local state") || !strings.Contains(out, tt.want) || !strings.Contains(out, localstate.Path(dir, good.Identity)) {
				t.Errorf("the log does not say the state at %s is ignored (%s):\n%s", localstate.Path(dir, good.Identity), tt.want, out)
			}
			if _, err := h.Netlink().LinkByName("flannel.1"); err == nil {
				t.Error("a device was made from an unusable state")
			}
		})
	}
}

func mustKey(s string) lease.Key {
	k, err := lease.ParseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

// TestNetworkStateOnlyWhenUnreachable: a Manager that answers but makes
// the node wait (here every subnet is taken, the cached one by another
// node: a cloned disk's state, say) is waited for. The node never runs
// from its local state then: it would route another node's subnet.
func TestNetworkStateOnlyWhenUnreachable(t *testing.T) {
	t.Parallel()
	h, m, quiet, srv := oneHostOn(t, `{"Network": "10.244.0.0/22", "Backend": {"Type": "vxlan"}}`)
	admin := srv.Client(t)
	for i, k := range []string{"10.244.1.0-24", "10.244.2.0-24", "10.244.3.0-24"} {
		other := fmt.Sprintf(`{"PublicIP":"172.30.9.%d","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:09:%02x"},"WeftOwner":"other-%d"}`, i+1, i+1, i)
		if _, err := admin.Put(context.Background(), "/coreos.com/network/subnets/"+k, other); err != nil {
			t.Fatal(err)
		}
	}
	id := localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name}
	store := localstate.NewStore(t.TempDir(), id, 0)
	if _, err := store.Save(localstate.State{
		Config: []byte(`{"Network": "10.244.0.0/22", "Backend": {"Type": "vxlan"}}`),
		Lease: lease.Lease{Key: mustKey("10.244.1.0-24"), Attrs: lease.Attrs{PublicIP: h.Addr.Addr(), BackendType: "vxlan", Owner: h.Name,
			BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:05:01"}`)}},
	}); err != nil {
		t.Fatal(err)
	}
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet,
		LocalState: store, OfflineAfter: 200 * time.Millisecond})
	time.Sleep(2 * time.Second)
	if ok, why := n.Ready(); ok || !strings.Contains(why, "waiting for a lease") {
		t.Errorf("Ready = %v, %q; want waiting for a lease", ok, why)
	}
	if off, ok := n.Offline(); ok {
		t.Errorf("runs from the local state while etcd answers: %+v", off)
	}
	if _, ok := n.Lease(); ok {
		t.Error("holds a lease")
	}
	addrs, _ := h.Netlink().AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		if strings.HasPrefix(a.IP.String(), "10.244.") {
			t.Errorf("the device took the cached subnet's address %s", a.IP)
		}
	}
}

// TestNetworkDropsCachedLeaseOnceAnswered: etcd is down at boot, so the
// node runs from its local state; then etcd comes back saying the cached
// subnet is another node's, and the network is full. Once the listing has
// come and no lease followed within the grace (3 OfflineAfter), the node
// stops taking the subnet for its own: it is not ready, holds no lease,
// and programs the subnet's holder as a peer.
func TestNetworkDropsCachedLeaseOnceAnswered(t *testing.T) {
	t.Parallel()
	conf := `{"Network": "10.244.0.0/22", "Backend": {"Type": "vxlan"}}`
	h, m, quiet, srv := oneHostOn(t, conf)
	admin := srv.Client(t)
	for i, k := range []string{"10.244.1.0-24", "10.244.2.0-24", "10.244.3.0-24"} {
		other := fmt.Sprintf(`{"PublicIP":"172.30.9.%d","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:09:%02x"},"WeftOwner":"other-%d"}`, i+1, i+1, i)
		if _, err := admin.Put(context.Background(), "/coreos.com/network/subnets/"+k, other); err != nil {
			t.Fatal(err)
		}
	}
	store := localstate.NewStore(t.TempDir(), localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name}, 0)
	if _, err := store.Save(localstate.State{
		Config: []byte(conf),
		Lease: lease.Lease{Key: mustKey("10.244.1.0-24"), Attrs: lease.Attrs{PublicIP: h.Addr.Addr(), BackendType: "vxlan", Owner: h.Name,
			BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:05:01"}`)}},
	}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet,
		LocalState: store, OfflineAfter: 300 * time.Millisecond})
	waitUntil(t, 10*time.Second, "the node to run from its local state", func() bool { ok, _ := n.Ready(); return ok })
	srv.Restart()
	waitUntil(t, 20*time.Second, "the node to give up the cached lease", func() bool {
		_, held := n.Lease()
		return !held
	})
	if ok, why := n.Ready(); ok || !strings.Contains(why, "waiting for a lease") {
		t.Errorf("Ready = %v, %q; want waiting for a lease", ok, why)
	}
	if _, off := n.Offline(); off {
		t.Error("still says it runs from the local state")
	}
	v4 := v4Datapath(n)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rejected: %+v\npeers: %+v", n.Rejected(), v4.Status().Reconciler.Peers)
		}
	})
	waitUntil(t, 10*time.Second, "the cached subnet's holder to be programmed as a peer", func() bool {
		for _, p := range v4.Status().Reconciler.Peers {
			if p.Peer.Subnet.String() == "10.244.1.0/24" && p.Programmed {
				return true
			}
		}
		return false
	})
	addrs, _ := h.Netlink().AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		if a.IP.String() == "10.244.1.0" {
			t.Error("the device still holds the given-up subnet's address")
		}
	}
}

// hintless is a Manager whose settings (lease.HintReader) cannot be read,
// as kube's while the API server is down.
type hintless struct{ *etcd.Manager }

func (hintless) Hints(ctx context.Context) (lease.Hints, error) {
	<-ctx.Done()
	return lease.Hints{}, errors.New("api server unreachable")
}

// TestNetworkCachedAddressIsACandidate: a node boots from its local state
// because its settings cannot be read. The public address it published
// before is no operator's choice: gone from the host (its address changed
// across the reboot), the address is found again and published; still
// there, it is used and followed when it changes later.
func TestNetworkCachedAddressIsACandidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		cached func(h *netnstest.Host) netip.Addr
	}{
		{"changed across the reboot", func(*netnstest.Host) netip.Addr { return netip.MustParseAddr("172.30.0.77") }},
		{"unchanged, then changed", func(h *netnstest.Host) netip.Addr { return h.Addr.Addr() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, m, quiet, srv := oneHostOn(t, offlineConfig)
			store := localstate.NewStore(t.TempDir(), localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name}, 0)
			if _, err := store.Save(localstate.State{
				Config: []byte(offlineConfig),
				Lease: lease.Lease{Key: mustKey("10.244.5.0-24"), Attrs: lease.Attrs{PublicIP: tt.cached(h), BackendType: "vxlan", Owner: h.Name,
					BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:05:01"}`)}},
			}); err != nil {
				t.Fatal(err)
			}
			n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: hintless{m}, Namespace: h.Handle, Logger: quiet,
				FindPublic: underlay.Policy{Interfaces: []string{netnstest.Underlay}, Namespace: h.Handle}.FindPublic,
				LocalState: store, OfflineAfter: 300 * time.Millisecond})
			admin := srv.Client(t)
			published := func(addr netip.Addr) func() bool {
				return func() bool {
					r, err := admin.Get(context.Background(), "/coreos.com/network/subnets/10.244.5.0-24")
					return err == nil && len(r.Kvs) == 1 && strings.Contains(string(r.Kvs[0].Value), `"PublicIP":"`+addr.String()+`"`)
				}
			}
			waitUntil(t, 10*time.Second, "the lease to publish the host's address", published(h.Addr.Addr()))
			moved := netip.MustParsePrefix("172.30.0.101/24")
			delAddr(t, h, netnstest.Underlay, h.Addr)
			h.AddrAdd(t, netnstest.Underlay, moved)
			waitUntil(t, 10*time.Second, "the lease to follow the address", published(moved.Addr()))
			waitUntil(t, 10*time.Second, "ready", func() bool { ok, _ := n.Ready(); return ok })
		})
	}
}
