//go:build linux

package agent_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/underlay"
)

// flow sends UDP from one agent's pod address to an echo on another's
// every 10 ms until stopped, and says when the echoes came back.
type flow struct {
	mu    sync.Mutex
	ok    []time.Time
	stop  chan struct{}
	done  chan struct{}
	total int
}

func startFlow(t *testing.T, from, to *simHost) *flow {
	t.Helper()
	echo := to.host.ListenEcho(t, to.current().Key.IPv4.Addr())
	src := from.current().Key.IPv4.Addr()
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			err := from.host.Exchange(src, echo.Addr, []byte("tick"), 50*time.Millisecond)
			f.mu.Lock()
			f.total++
			if err == nil {
				f.ok = append(f.ok, time.Now())
			}
			f.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	t.Cleanup(f.end)
	return f
}

func (f *flow) end() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// restoredAfter waits until an echo comes back after since, and returns
// how long after since that was.
func (f *flow) restoredAfter(t *testing.T, since time.Time, what string) time.Duration {
	t.Helper()
	var at time.Time
	testutil.WaitFor(t, 15*time.Second, "traffic to flow again after "+what, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, ok := range f.ok {
			if ok.After(since) {
				at = ok
				return true
			}
		}
		return false
	})
	return at.Sub(since)
}

// TestNetworkFollowsUnderlay: a host's underlay address changes while
// traffic flows to it from a peer; the host moves its device to the new
// address and republishes its lease in place (same subnet, same key), and
// the peer sends to the new address. Then the host's interface is
// replaced by another one: the same again. A peer whose public address
// was set, not found, and vanishes waits, saying why, and carries traffic
// again once the address is back.
func TestNetworkFollowsUnderlay(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	admin := srv.Client(t)
	if _, err := admin.Put(context.Background(), "/coreos.com/network/config", offlineConfig); err != nil {
		t.Fatal(err)
	}
	seg := netnstest.NewSegment(t, 2)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	logs := &testutil.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the moving host's log:\n%s", logs)
		}
	})
	var agents []*simHost
	for i, h := range seg.Hosts {
		m, err := etcd.New(etcd.Options{Endpoints: []string{srv.Endpoint()}, Node: h.Name, TTL: time.Minute, RenewMargin: 10 * time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		a := &simHost{host: h}
		cfg := agent.NetworkConfig{Datapaths: vxlanOnly, Manager: m, Namespace: h.Handle, OnState: a.record, ResyncInterval: 2 * time.Second, Logger: quiet}
		if i == 0 {
			// The moving host finds its address, as flanneld does
			// without --public-ip.
			cfg.FindPublic = underlay.Policy{Interfaces: []string{netnstest.Underlay, "eth1"}, Namespace: h.Handle}.FindPublic
			cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
		} else {
			cfg.PublicIP = h.Addr.Addr() // set, as with --public-ip
		}
		a.net = runNetwork(t, cfg)
		agents = append(agents, a)
	}
	waitReady(t, agents)
	a, b := agents[0], agents[1]
	key := "/coreos.com/network/subnets/" + a.current().Key.String()
	before, err := admin.Get(context.Background(), key)
	if err != nil || len(before.Kvs) != 1 {
		t.Fatalf("a's key: %v %v", before, err)
	}
	f := startFlow(t, b, a)
	f.restoredAfter(t, time.Now().Add(-time.Hour), "the start")

	published := func(addr netip.Addr) bool {
		resp, err := admin.Get(context.Background(), key)
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), `"PublicIP":"`+addr.String()+`"`) &&
			resp.Kvs[0].CreateRevision == before.Kvs[0].CreateRevision
	}

	// A new address, the old one gone, as a DHCP client changes it: the
	// old one removed, then the new one added. (Added first, the new one
	// would be a secondary address, which the kernel deletes with the
	// primary.)
	moved := netip.MustParsePrefix("172.30.0.101/24")
	changed := time.Now()
	delAddr(t, a.host, netnstest.Underlay, a.host.Addr)
	a.host.AddrAdd(t, netnstest.Underlay, moved)
	took := f.restoredAfter(t, changed, "the address change")
	t.Logf("underlay address changed: traffic from the peer restored %v after the change", took.Round(time.Millisecond))
	testutil.WaitFor(t, 5*time.Second, "the lease to publish the new address in place", func() bool { return published(moved.Addr()) })
	if got := a.current().Key.String(); "/coreos.com/network/subnets/"+got != key {
		t.Errorf("the host moved to %s", got)
	}

	// The interface replaced by another, with another address.
	replaced := netip.MustParsePrefix("172.30.0.102/24")
	changed = time.Now()
	seg.ReplaceUnderlay(t, a.host, netnstest.Underlay, "eth1", replaced)
	took = f.restoredAfter(t, changed, "the interface was replaced")
	t.Logf("underlay interface replaced: traffic from the peer restored %v after the change", took.Round(time.Millisecond))
	testutil.WaitFor(t, 5*time.Second, "the lease to publish the replacement's address", func() bool { return published(replaced.Addr()) })
	f.end()
	if !strings.Contains(logs.String(), "the underlay address changed") {
		t.Errorf("the move was not logged:\n%s", logs)
	}

	// b's address was set: it vanishing is a wait, not a move.
	delAddr(t, b.host, netnstest.Underlay, b.host.Addr)
	testutil.WaitFor(t, 10*time.Second, "b to say it waits for its address", func() bool {
		ok, why := b.net.Ready()
		return !ok && strings.Contains(why, "is on no interface now")
	})
	b.host.AddrAdd(t, netnstest.Underlay, b.host.Addr)
	testutil.WaitFor(t, 10*time.Second, "b to be ready again", func() bool { ok, _ := b.net.Ready(); return ok })
	if err := reach(t, b, a); err != nil {
		t.Errorf("b -> a after b's address came back: %v", err)
	}
}

func delAddr(t *testing.T, h *netnstest.Host, link string, addr netip.Prefix) {
	t.Helper()
	l, err := h.Netlink().LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Netlink().AddrDel(l, a); err != nil {
		t.Fatal(err)
	}
}
