//go:build linux

package agent_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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
)

// agent is one simulated host running agent.Network against etcd.
type simHost struct {
	host   *netnstest.Host
	net    *agent.Network
	mu     sync.Mutex
	leases []lease.Lease
	states []agent.State
	early  []string // States announced before the device held their subnet
}

// checkEarly fails t if a State was announced before the device carried
// its subnet.
func (a *simHost) checkEarly(t *testing.T) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.early) > 0 {
		t.Errorf("%s announced %v before its device held them", a.host.Name, a.early)
	}
}

// record is the agent's OnState: it keeps each State, and each lease that
// differs from the one before.
func (a *simHost) record(st agent.State) {
	// A State is announced only once the device carries its subnet.
	held := false
	if link, err := a.host.Netlink().LinkByName("flannel.1"); err == nil {
		addrs, _ := a.host.Netlink().AddrList(link, netlink.FAMILY_V4)
		for _, ad := range addrs {
			if ip, _ := netip.AddrFromSlice(ad.IP); ip.Unmap() == st.Lease.Key.IPv4.Addr() {
				held = true
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !held {
		a.early = append(a.early, st.Lease.Key.String())
	}
	a.states = append(a.states, st)
	if n := len(a.leases); n == 0 || a.leases[n-1].Key != st.Lease.Key {
		a.leases = append(a.leases, st.Lease)
	}
}

func (a *simHost) leaseHistory() []lease.Lease {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]lease.Lease(nil), a.leases...)
}

func (a *simHost) current() lease.Lease {
	h := a.leaseHistory()
	return h[len(h)-1]
}

func startAgents(t *testing.T, n int) ([]*simHost, *etcdtest.Server) {
	t.Helper()
	srv := etcdtest.Start(t)
	admin := srv.Client(t)
	if _, err := admin.Put(context.Background(), "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	seg := netnstest.NewSegment(t, n)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var agents []*simHost
	for _, h := range seg.Hosts {
		m, err := etcd.New(etcd.Options{Endpoints: []string{srv.Endpoint()}, Node: h.Name, TTL: 10 * time.Second, RenewMargin: 5 * time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		a := &simHost{host: h}
		a.net, err = agent.NewNetwork(agent.NetworkConfig{
			Datapaths: vxlanOnly,
			Manager:   m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet,
			OnState: a.record,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.net.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != context.Canceled {
				t.Errorf("Run returned %v", err)
			}
			a.checkEarly(t)
		})
		agents = append(agents, a)
	}
	return agents, srv
}

// waitReady waits until every agent is ready and has announced its lease
// through OnState.
func waitReady(t *testing.T, agents []*simHost) {
	t.Helper()
	for _, a := range agents {
		testutil.WaitFor(t, 15*time.Second, a.host.Name+" ready, its lease announced", func() bool {
			s := a.net.Snapshot()
			return s.Ready && s.Held && len(a.leaseHistory()) > 0 && a.current().Key == s.Lease.Key
		})
	}
}

// reach sends UDP between two agents' overlay addresses.
func reach(t *testing.T, from, to *simHost) error {
	t.Helper()
	echo := to.host.ListenEcho(t, to.current().Key.IPv4.Addr())
	return from.host.WaitExchange(from.current().Key.IPv4.Addr(), echo.Addr, 5*time.Second)
}

// TestNetworkEndToEnd runs the whole loop on three hosts: each leases a
// subnet from etcd, builds its device, learns the others from the watch,
// and traffic flows between every pair.
func TestNetworkEndToEnd(t *testing.T) {
	t.Parallel()
	agents, _ := startAgents(t, 3)
	waitReady(t, agents)
	seen := map[lease.Key]bool{}
	for _, a := range agents {
		l := a.current()
		if seen[l.Key] {
			t.Fatalf("two hosts hold %v", l.Key)
		}
		seen[l.Key] = true
		if a.net.MTU() != 1450 {
			t.Errorf("MTU %d", a.net.MTU())
		}
	}
	for _, from := range agents {
		for _, to := range agents {
			if from != to {
				if err := reach(t, from, to); err != nil {
					t.Fatalf("%s -> %s: %v", from.host.Name, to.host.Name, err)
				}
			}
		}
	}
}

// TestNetworkLeaseLost has another node take one host's subnet (as after a
// partition longer than the TTL): the host acquires a new subnet,
// re-addresses its device, tells its embedder, and the other hosts route to
// the new subnet.
func TestNetworkLeaseLost(t *testing.T) {
	t.Parallel()
	agents, srv := startAgents(t, 3)
	waitReady(t, agents)
	a := agents[0]
	old := a.current().Key
	intruder := `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"},"WeftOwner":"intruder"}`
	if _, err := srv.Client(t).Put(context.Background(), "/coreos.com/network/subnets/"+old.String(), intruder); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "a new lease after the old one was deleted", func() bool { return len(a.leaseHistory()) >= 2 })
	waitReady(t, agents)
	if now := a.current().Key; now == old {
		t.Fatalf("host kept %v, which the intruder holds", now)
	}
	if got := a.host.Namespace.Netlink(); got == nil {
		t.Fatal("no netlink handle")
	}
	for _, other := range agents[1:] {
		if err := reach(t, other, a); err != nil {
			t.Fatalf("%s -> %s's new subnet: %v", other.host.Name, a.host.Name, err)
		}
		if err := reach(t, a, other); err != nil {
			t.Fatalf("%s -> %s: %v", a.host.Name, other.host.Name, err)
		}
	}
	// The device carries only the new address.
	link, err := a.host.Netlink().LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := a.host.Netlink().AddrList(link, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		if ip, _ := netip.AddrFromSlice(ad.IP); ip == old.IPv4.Addr() {
			t.Errorf("device still has the lost subnet's address %s", ip)
		}
	}
}

// orderSpy wraps a real lease manager to record whether the first lease was
// held before the lease watch began.
type orderSpy struct {
	lease.Manager
	acquired     atomic.Bool
	watchedFirst atomic.Bool // WatchLeases was called with no lease yet
	watched      atomic.Bool
}

func (s *orderSpy) Acquire(ctx context.Context, req lease.AcquireRequest) (lease.Lease, error) {
	l, err := s.Manager.Acquire(ctx, req)
	if err == nil {
		s.acquired.Store(true)
	}
	return l, err
}

func (s *orderSpy) WatchLeases(ctx context.Context, ch chan<- lease.Batch) error {
	if !s.acquired.Load() {
		s.watchedFirst.Store(true)
	}
	s.watched.Store(true)
	return s.Manager.WatchLeases(ctx, ch)
}

// TestNetworkWatchesAfterLease checks that Network lists the peers only
// once its own lease is held, so that the two full listings of the subnets
// are never in memory together at startup.
func TestNetworkWatchesAfterLease(t *testing.T) {
	t.Parallel()
	h, m, quiet := oneHost(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	spy := &orderSpy{Manager: m}
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: spy, Node: h.Name, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet})
	testutil.WaitFor(t, 15*time.Second, "the node ready", func() bool { ok, _ := n.Ready(); return ok })
	if !spy.watched.Load() {
		t.Fatal("ready without watching the leases")
	}
	if spy.watchedFirst.Load() {
		t.Error("the lease watch began before the lease was held")
	}
}

// scriptedWatch wraps a real lease manager but for WatchLeases, whose
// batches the test sends.
type scriptedWatch struct {
	lease.Manager
	batches chan lease.Batch
}

func (s *scriptedWatch) WatchLeases(ctx context.Context, ch chan<- lease.Batch) error {
	for {
		select {
		case b := <-s.batches:
			select {
			case ch <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestNetworkOneFamilyChange: a peer whose IPv6 subnet alone changes comes
// (from the kube lease manager) as a Removed and an Added event in one
// batch. Its IPv6 route moves; its IPv4 route is never touched.
func TestNetworkOneFamilyChange(t *testing.T) {
	t.Parallel()
	h, m, quiet := oneHost(t, `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`)
	script := &scriptedWatch{Manager: m, batches: make(chan lease.Batch)}
	runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: script, Node: h.Name, PublicIP: h.Addr.Addr(), PublicIPv6: h.Addr6.Addr(), Namespace: h.Handle, Logger: quiet})

	peer := func(v6 string) lease.Lease {
		return lease.Lease{
			Key: lease.Key{IPv4: netip.MustParsePrefix("10.244.200.0/24"), IPv6: netip.MustParsePrefix(v6)},
			Attrs: lease.Attrs{PublicIP: netip.MustParseAddr("172.30.9.9"), PublicIPv6: netip.MustParseAddr("fd30::99"), BackendType: "vxlan", Owner: "peer",
				BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"}`), BackendV6Data: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:98"}`)},
		}
	}
	before, after := peer("fd00:10:244:c8::/64"), peer("fd00:10:244:c9::/64")
	script.batches <- lease.Batch{Snapshot: true, Events: []lease.Event{{Type: lease.Added, Lease: before}}}
	routeTo := func(dst netip.Prefix, family int) bool {
		routes, err := h.Netlink().RouteListFiltered(family, &netlink.Route{Dst: netipNet(dst)}, netlink.RT_FILTER_DST)
		return err == nil && len(routes) > 0
	}
	testutil.WaitFor(t, 15*time.Second, "the peer's routes", func() bool {
		return routeTo(before.Key.IPv4, netlink.FAMILY_V4) && routeTo(before.Key.IPv6, netlink.FAMILY_V6)
	})

	updates, stop := make(chan netlink.RouteUpdate, 256), make(chan struct{})
	defer close(stop)
	if err := netlink.RouteSubscribeAt(h.Handle, updates, stop); err != nil {
		t.Fatal(err)
	}
	script.batches <- lease.Batch{Events: []lease.Event{{Type: lease.Removed, Lease: before}, {Type: lease.Added, Lease: after}}}
	testutil.WaitFor(t, 15*time.Second, "the IPv6 route to move", func() bool {
		return routeTo(after.Key.IPv6, netlink.FAMILY_V6) && !routeTo(before.Key.IPv6, netlink.FAMILY_V6)
	})
	for len(updates) > 0 {
		u := <-updates
		if u.Dst != nil && u.Dst.String() == before.Key.IPv4.String() {
			t.Errorf("the IPv4 route was touched: %+v", u)
		}
	}
	if !routeTo(before.Key.IPv4, netlink.FAMILY_V4) {
		t.Error("the IPv4 route is gone")
	}
}

func netipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// runNetwork runs a Network until the end of the test, which then checks
// that Run returned context.Canceled.
func runNetwork(t *testing.T, cfg agent.NetworkConfig) *agent.Network {
	t.Helper()
	n, err := agent.NewNetwork(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
	})
	return n
}

// oneHost starts an etcd holding config, one simulated host, and an etcd
// lease manager for it, closed at the end of the test.
func oneHost(t *testing.T, config string) (*netnstest.Host, *etcd.Manager, *slog.Logger) {
	t.Helper()
	h, m, quiet, _ := oneHostOn(t, config)
	return h, m, quiet
}

// oneHostOn is oneHost, with the etcd server, for tests that write to it.
func oneHostOn(t *testing.T, config string) (*netnstest.Host, *etcd.Manager, *slog.Logger, *etcdtest.Server) {
	t.Helper()
	srv := etcdtest.Start(t)
	if _, err := srv.Client(t).Put(context.Background(), "/coreos.com/network/config", config); err != nil {
		t.Fatal(err)
	}
	h := netnstest.NewSegment(t, 1).Hosts[0]
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := etcd.New(etcd.Options{Endpoints: []string{srv.Endpoint()}, Node: h.Name, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return h, m, quiet, srv
}

// TestNetworkMovedToDisjointRange moves the Network under three running
// hosts (10.244.0.0/16 to 10.245.0.0/16): each gives up its lease, takes
// one in the new range, deletes its old key, drops the old address from
// its device and tells its embedder, with no restart; traffic flows in the
// new range. Widening it again to 10.244.0.0/15 keeps every lease.
func TestNetworkMovedToDisjointRange(t *testing.T) {
	t.Parallel()
	agents, srv := startAgents(t, 3)
	waitReady(t, agents)
	admin := srv.Client(t)
	ctx := context.Background()
	old := map[*simHost]lease.Key{}
	for _, a := range agents {
		old[a] = a.current().Key
	}
	moved := time.Now()
	if _, err := admin.Put(ctx, "/coreos.com/network/config", `{"Network": "10.245.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	newNet := netip.MustParsePrefix("10.245.0.0/16")
	for _, a := range agents {
		testutil.WaitFor(t, 20*time.Second, a.host.Name+" ready on a lease in "+newNet.String(), func() bool {
			s := a.net.Snapshot()
			return s.Ready && s.Held && newNet.Contains(s.Lease.Key.IPv4.Addr()) && a.current().Key == s.Lease.Key
		})
	}
	t.Logf("all three hosts moved and ready %v after the change", time.Since(moved).Round(time.Millisecond))
	seen := map[lease.Key]bool{}
	for _, a := range agents {
		k := a.current().Key
		if seen[k] {
			t.Fatalf("two hosts hold %v", k)
		}
		seen[k] = true
		// The old key is gone from etcd; the device has the new address only.
		resp, err := admin.Get(ctx, "/coreos.com/network/subnets/"+old[a].String())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 0 {
			t.Errorf("%s's old key %v is still in etcd", a.host.Name, old[a])
		}
		link, err := a.host.Netlink().LinkByName("flannel.1")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := a.host.Netlink().AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != netip.PrefixFrom(k.IPv4.Addr(), 32).String() {
			t.Errorf("%s's device has %v, want only %v/32", a.host.Name, addrs, k.IPv4.Addr())
		}
	}
	resp, err := admin.Get(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 3 {
		t.Errorf("%d subnet keys after the move, want 3", resp.Count)
	}
	for _, from := range agents {
		for _, to := range agents {
			if from != to {
				if err := reach(t, from, to); err != nil {
					t.Fatalf("%s -> %s in the new range: %v", from.host.Name, to.host.Name, err)
				}
			}
		}
	}

	// Widening keeps every lease (seed 003).
	before := map[*simHost]int{}
	for _, a := range agents {
		before[a] = len(a.leaseHistory())
	}
	put, err := admin.Put(ctx, "/coreos.com/network/config", `{"Network": "10.244.0.0/15", "Backend": {"Type": "vxlan"}}`)
	if err != nil {
		t.Fatal(err)
	}
	// No sleep to prove nothing moved: each Network shows when it has
	// applied the config (a lease it would give up is given up as it
	// applies it), and etcd shows every write to a subnet key since.
	widened := netip.MustParsePrefix("10.244.0.0/15")
	for _, a := range agents {
		testutil.WaitFor(t, 15*time.Second, a.host.Name+" running the widened config", func() bool {
			s := a.net.Snapshot()
			return s.HasConfig && s.Config.Network == widened
		})
	}
	// A lease given up or taken anew is a key deleted or created: the
	// same three keys, none created since the change, say none was.
	keys, err := admin.Get(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.Kvs) != 3 {
		t.Errorf("%d subnet keys after the widening, want the 3 held", len(keys.Kvs))
	}
	for _, kv := range keys.Kvs {
		if kv.CreateRevision > put.Header.Revision {
			t.Errorf("subnet key %s created after the widening", kv.Key)
		}
	}
	for _, a := range agents {
		if l, held := a.net.Lease(); !held || len(a.leaseHistory()) != before[a] || l.Key != a.current().Key {
			t.Errorf("%s's lease changed on widening: %v (held %v), history %d, was %d", a.host.Name, l.Key, held, len(a.leaseHistory()), before[a])
		}
		if ok, why := a.net.Ready(); !ok {
			t.Errorf("%s not ready after widening: %s", a.host.Name, why)
		}
	}
}

// TestNetworkWaitsOutBadConfig: configs the node cannot run (another
// backend, a VNI or Port out of range, an MTU over what the underlay
// carries, IPv6 without a public IPv6 address) are a wait, never a
// return from Run: Ready names the reason and the field, and no device
// exists. Each is then fixed with a config the node can run, and the node
// comes up on it without a restart.
func TestNetworkWaitsOutBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, config string
		want         []string
	}{
		{"host-gw", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`, []string{`Backend.Type "host-gw"`, "links vxlan", "NetworkConfig.Datapaths"}},
		{"wireguard", `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}`, []string{`Backend.Type "wireguard"`}},
		{"VNI", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 16777216}}`, []string{"Backend.VNI 16777216", "0 to 16777215"}},
		{"Port", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": 70000}}`, []string{"Backend.Port 70000"}},
		{"MTU", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "MTU": 9000}}`, []string{"Backend.MTU 9000", "at most 1450", "eth0's MTU 1500"}},
		{"no IPv6 address", `{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Backend": {"Type": "vxlan"}}`, []string{"enables IPv6", "no IPv6 public address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := etcdtest.Start(t)
			admin := srv.Client(t)
			put := func(c string) {
				t.Helper()
				if _, err := admin.Put(context.Background(), "/coreos.com/network/config", c); err != nil {
					t.Fatal(err)
				}
			}
			put(tc.config)
			h := netnstest.NewSegment(t, 1).Hosts[0]
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			m, err := etcd.New(etcd.Options{Endpoints: []string{srv.Endpoint()}, Node: h.Name, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			// runNetwork's cleanup fails the test if Run returned
			// anything but context.Canceled: a Run that gave up on the
			// config instead of waiting.
			n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet})
			var why string
			testutil.WaitFor(t, 10*time.Second, "a reason to wait", func() bool {
				_, why = n.Ready()
				return why != "starting" && why != "waiting for the network config"
			})
			for _, w := range tc.want {
				if !strings.Contains(why, w) {
					t.Errorf("Ready says %q; want it to name %q", why, w)
				}
			}
			// No sleep for a Run that would give up: the same Network
			// comes up once the config is fixed, which a Run that had
			// returned never would.
			if ok, _ := n.Ready(); ok {
				t.Fatal("ready on a config the node cannot run")
			}
			if links, _ := h.Netlink().LinkList(); len(links) != 2 {
				t.Errorf("devices beside lo and eth0 while waiting: %d links", len(links))
			}
			put(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
			testutil.WaitFor(t, 15*time.Second, "the node ready after the fix", func() bool { ok, _ := n.Ready(); return ok })
		})
	}
}

// refusing is a lease.Manager whose Acquire refuses for good: a fault no
// real store produces on demand.
type refusing struct{ cfg lease.Config }

func (r refusing) Config(context.Context) (lease.Config, error) { return r.cfg, nil }
func (r refusing) WatchConfig(ctx context.Context, ch chan<- lease.Config) error {
	ch <- r.cfg
	<-ctx.Done()
	return ctx.Err()
}
func (refusing) Node() string { return "refused" }
func (refusing) Acquire(context.Context, lease.AcquireRequest) (lease.Lease, error) {
	return lease.Lease{}, errors.New("attributes refused")
}
func (refusing) Keep(ctx context.Context, _ lease.Lease) error { <-ctx.Done(); return ctx.Err() }
func (refusing) WatchLeases(ctx context.Context, _ chan<- lease.Batch) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestNetworkRunUnrecoverable: an error retrying cannot fix ends Run with
// ErrUnrecoverable, the cause kept; a cancelled context is just that.
func TestNetworkRunUnrecoverable(t *testing.T) {
	h := netnstest.NewSegment(t, 1).Hosts[0]
	cfg, err := lease.ParseConfig([]byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := agent.NewNetwork(agent.NetworkConfig{Datapaths: vxlanOnly, Manager: refusing{cfg}, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Run(context.Background())
	if !errors.Is(err, agent.ErrUnrecoverable) || !strings.Contains(err.Error(), "attributes refused") {
		t.Errorf("Run: %v, want ErrUnrecoverable with the cause", err)
	}
}
