//go:build linux

package wireguard

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
)

// TestKeyKeptAcrossRestart stops a node's datapath (its user-space device
// goes with it) and starts a new one from nothing but the same key file,
// as after a reboot with the control plane down: the key is the same, so
// the peers, whose configuration nobody touches, reach it again.
func TestKeyKeptAcrossRestart(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	_, nodes := newNodes(t, 3, cfg)
	for _, nd := range nodes {
		nd.start(t, nd.config(), leasesOf(nodes, nd))
	}
	for _, nd := range nodes {
		waitSynced(t, nd, 0)
	}
	a := nodes[0]
	pingAll(t, nodes, true, true)
	a.stop()
	if err := nodes[1].h.Ping(nodes[1].pod4, a.pod4); err == nil {
		t.Fatal("a answered with its datapath stopped")
	}
	fi, err := os.Stat(a.keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v; want mode 0600", fi, err)
	}

	k, created, err := LoadOrCreateKey(a.keyFile)
	if err != nil || created || k != a.key {
		t.Fatalf("key after restart: created %v, same %v, %v", created, k == a.key, err)
	}
	c := a.config()
	c.PrivateKey = k
	a.start(t, c, leasesOf(nodes, a))
	waitSynced(t, a, 0)
	if a.dp.PublicKey() != a.key.PublicKey() {
		t.Fatal("a new public key after restart")
	}
	for _, b := range nodes[1:] {
		ping(t, b.h.Namespace, b.pod4, a.pod4)
		ping(t, b.h.Namespace, b.pod6, a.pod6)
	}
}

// TestHostileLeaseRejected gives every node a lease, younger than the
// others, carrying node b's public key (and another with a's own key):
// each is listed failed by rule, b's peer keeps its AllowedIPs and
// endpoint everywhere, and traffic between the real nodes flows.
func TestHostileLeaseRejected(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	_, nodes := newNodes(t, 3, cfg)
	a, b, c := nodes[0], nodes[1], nodes[2]
	stolen, err := cfg.Attrs(b.key.PublicKey(), c.h.Addr.Addr(), c.h.Addr6.Addr(), true, true)
	if err != nil {
		t.Fatal(err)
	}
	hostile := lease.Lease{Key: lease.Key{IPv4: mustPrefix("10.244.9.0/24"), IPv6: mustPrefix("fd00:244:9::/64")}, Attrs: stolen, Seniority: 100}
	own, _ := cfg.Attrs(a.key.PublicKey(), c.h.Addr.Addr(), c.h.Addr6.Addr(), true, true)
	mine := lease.Lease{Key: lease.Key{IPv4: mustPrefix("10.244.8.0/24")}, Attrs: own, Seniority: 101}
	for _, nd := range nodes {
		nd.start(t, nd.config(), append(leasesOf(nodes, nd), hostile, mine))
	}
	st := waitSynced(t, a, 3) // hostile on each device, mine on the IPv4 one
	for _, dv := range st.Devices {
		for _, p := range dv.Peers {
			switch p.Key {
			case hostile.Key:
				if p.Programmed || p.Reason != ReasonKeyConflict || !strings.Contains(p.Err, b.lease.Key.String()) {
					t.Errorf("%s: hostile peer %+v; want failed as %s naming %s", dv.Name, p, ReasonKeyConflict, b.lease.Key)
				}
			case mine.Key:
				if p.Programmed || p.Reason != ReasonLease || !strings.Contains(p.Err, "own") {
					t.Errorf("%s: peer with a's own key %+v; want failed as %s", dv.Name, p, ReasonLease)
				}
			case b.lease.Key:
				wantEP := b.h.Addr.Addr()
				if dv.Name == DeviceNameV6 {
					wantEP = b.h.Addr6.Addr()
				}
				if !p.Programmed || p.Endpoint.Addr() != wantEP || len(p.AllowedIPs) != 1 || !b.lease.Key.IPv4.Contains(p.AllowedIPs[0].Addr()) && !b.lease.Key.IPv6.Contains(p.AllowedIPs[0].Addr()) {
					t.Errorf("%s: b's peer %+v; want its own endpoint and subnet", dv.Name, p)
				}
			}
		}
	}
	// What the device holds, read back: b's key has b's subnet only.
	dev, err := a.h.Netlink().LinkByName(DeviceName)
	if err != nil {
		t.Fatal(err)
	}
	_ = dev
	got := devicePeers(t, a)
	if al := got[b.key.PublicKey()]; len(al.AllowedIPs) != 1 || al.AllowedIPs[0].String() != b.lease.Key.IPv4.String() {
		t.Fatalf("b's key on a's device: %+v", al)
	}
	pingAll(t, nodes, true, true)
}

// devicePeers reads nd's flannel-wg the way `wg show` would.
func devicePeers(t *testing.T, nd *node) map[Key]wgtypes.Peer {
	t.Helper()
	nd.dp.work.Lock()
	defer nd.dp.work.Unlock()
	var c wgClient
	if u := nd.dp.devs[0].user; u != nil {
		c = u
	} else {
		c = nd.dp.kernel
	}
	d, err := c.Device(DeviceName)
	if err != nil {
		t.Fatal(err)
	}
	out := map[Key]wgtypes.Peer{}
	for _, p := range d.Peers {
		out[Key(p.PublicKey)] = p
	}
	return out
}

// TestDeviceDeletedRebuilt deletes flannel-wg by hand while running: the
// datapath builds it again from the notification (resync is an hour), with
// its key, address, route and peers, and traffic flows again.
func TestDeviceDeletedRebuilt(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	_, nodes := newNodes(t, 3, cfg)
	for _, nd := range nodes {
		nd.start(t, nd.config(), leasesOf(nodes, nd))
	}
	for _, nd := range nodes {
		waitSynced(t, nd, 0)
	}
	a := nodes[0]
	before := a.dp.Status().Devices[0].Index
	if out, err := exec.Command("ip", "-n", a.h.Name, "link", "del", DeviceName).CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v\n%s", err, out)
	}
	testutil.WaitFor(t, 10*time.Second, "flannel-wg rebuilt", func() bool {
		st := a.dp.Status()
		return st.Synced && st.Devices[0].Index != before && st.Devices[0].Index != 0
	})
	st := waitSynced(t, a, 0)
	found := false
	for _, r := range st.Repairs {
		found = found || (r.What == DeviceName && strings.Contains(r.Why, "re-created"))
	}
	if !found {
		t.Fatalf("no repair recorded for the device: %+v", st.Repairs)
	}
	pingAll(t, nodes, true, true)
}

// refusing is a device client that refuses every configuration naming one
// key: a fault the real device cannot be made to produce on demand.
type refusing struct {
	wgClient
	key Key
}

func (r refusing) ConfigureDevice(name string, cfg wgtypes.Config) error {
	for _, p := range cfg.Peers {
		if Key(p.PublicKey) == r.key && !p.Remove {
			return errors.New("refused")
		}
	}
	return r.wgClient.ConfigureDevice(name, cfg)
}

// TestPeerRefusedIsThatPeersFailure: a peer the device refuses is failed
// and retried; the datapath is synced, and the other peers programmed and
// reached.
func TestPeerRefusedIsThatPeersFailure(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	cfg.Mode = ModeIPv4
	_, nodes := newNodes(t, 3, cfg)
	a, b, c := nodes[0], nodes[1], nodes[2]
	for _, nd := range nodes[1:] {
		nd.start(t, nd.config(), leasesOf(nodes, nd))
	}
	ac := a.config()
	ac.client = func(w wgClient) wgClient { return refusing{w, c.key.PublicKey()} }
	a.start(t, ac, leasesOf(nodes, a))
	st := waitSynced(t, a, 1)
	for _, p := range st.Devices[0].Peers {
		if (p.Key == c.lease.Key) == p.Programmed {
			t.Errorf("peer %+v: want only c's failed", p)
		}
		if p.Key == c.lease.Key && p.Reason != ReasonDevice {
			t.Errorf("c's reason %q, want %q", p.Reason, ReasonDevice)
		}
	}
	ping(t, a.h.Namespace, a.pod4, b.pod4)
	ping(t, a.h.Namespace, a.pod6, b.pod6)
}

// TestPeerDriftRepaired changes a's device behind its back, as `wg set`
// would: one peer removed, another's AllowedIPs and endpoint changed, a
// stranger added. A resync puts everything back, counts the repairs, and
// traffic flows.
func TestPeerDriftRepaired(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	cfg.Mode = ModeIPv4
	cfg.PersistentKeepaliveInterval = 25 * time.Second
	_, nodes := newNodes(t, 3, cfg)
	for _, nd := range nodes {
		nd.start(t, nd.config(), leasesOf(nodes, nd))
	}
	for _, nd := range nodes {
		waitSynced(t, nd, 0)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	stranger, _ := GenerateKey()
	a.dp.work.Lock()
	err := a.dp.devs[0].user.ConfigureDevice(DeviceName, wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: wgtypes.Key(b.key.PublicKey()), Remove: true},
		(peerWant{key: c.key.PublicKey(), endpoint: mustAddrPort("172.30.0.99:1"), allowed: []netipPrefix{mustPrefix("10.244.0.0/16")}}).config(),
		(peerWant{key: stranger.PublicKey(), endpoint: mustAddrPort("172.30.0.98:1"), allowed: []netipPrefix{mustPrefix("10.250.0.0/16")}}).config(),
	}})
	a.dp.work.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Reconcile(); err != nil {
		t.Fatal(err)
	}
	got := devicePeers(t, a)
	if _, ok := got[stranger.PublicKey()]; ok || len(got) != 2 {
		t.Fatalf("peers after resync: %v", got)
	}
	for _, nd := range []*node{b, c} {
		p := got[nd.key.PublicKey()]
		if len(p.AllowedIPs) != 2 || p.Endpoint.String() != nd.h.Addr.Addr().String()+":51820" || p.PersistentKeepaliveInterval != 25*time.Second {
			t.Errorf("peer %s after resync: %+v", nd.h.Name, p)
		}
	}
	if st := a.dp.Status(); st.Repaired < 2 {
		t.Errorf("%d repairs, want b's and c's: %+v", st.Repaired, st.Repairs)
	}
	pingAll(t, nodes, true, true)
}

// TestNetworkWidened widens the Network under running nodes, as seed 003
// does (/16 to /8): the route to the device follows, the old one goes,
// and a peer outside the old Network but inside the new one is admitted.
func TestNetworkWidened(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	cfg.Mode = ModeIPv4
	_, nodes := newNodes(t, 2, cfg)
	a, b := nodes[0], nodes[1]
	far, _ := cfg.Attrs(b.key.PublicKey(), b.h.Addr.Addr(), netip.Addr{}, true, false)
	wide := netip.MustParsePrefix("10.0.0.0/8")
	b.lease = lease.Lease{Key: lease.Key{IPv4: netip.MustParsePrefix("10.99.2.0/24")}, Attrs: far, Seniority: 2}
	a.start(t, a.config(), []lease.Lease{b.lease})
	st := waitSynced(t, a, 1)
	if p := st.Devices[0].Peers[0]; p.Reason != ReasonLease || !strings.Contains(p.Err, "Network") {
		t.Fatalf("peer outside the Network: %+v", p)
	}
	a.dp.SetNetworks(wide, netip.Prefix{})
	waitSynced(t, a, 0)
	rs := ownRoutes(t, a)
	if len(rs) != 1 || rs[0] != wide {
		t.Fatalf("routes %v, want only %s", rs, wide)
	}
}

// ownRoutes lists nd's IPv4 routes of the datapath's protocol.
func ownRoutes(t *testing.T, nd *node) []netip.Prefix {
	t.Helper()
	rs, err := nd.h.Netlink().RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: DefaultRouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, r := range rs {
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), ones))
	}
	return out
}

// TestEngines: asked for the kernel's WireGuard on a kernel without it,
// NewDatapath fails naming the device and leaves nothing behind; asked for
// user space, it says so; a link of another type holding the device's
// name is replaced.
func TestEngines(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	cfg.Mode = ModeIPv4
	_, nodes := newNodes(t, 1, cfg)
	a := nodes[0]
	if err := a.h.Netlink().LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: DeviceName}}); err != nil {
		t.Fatal(err)
	}
	c := a.config()
	c.Engine = EngineKernel
	if dp, err := NewDatapath(c); err == nil {
		dp.Close()
		if st := dp.Status(); st.Devices[0].Engine == EngineKernel {
			t.Skip("this kernel has WireGuard")
		}
		t.Fatal("the kernel engine started on a kernel without WireGuard")
	} else if !strings.Contains(err.Error(), DeviceName) {
		t.Fatalf("error %v does not name the device", err)
	}
	c.Engine = EngineUserspace
	a.start(t, c, nil)
	st := waitSynced(t, a, 0)
	if d := st.Devices[0]; d.Engine != EngineUserspace || !strings.Contains(d.EngineReason, "asked") {
		t.Fatalf("device %+v; want user space, asked for", d)
	}
	link, err := a.h.Netlink().LinkByName(DeviceName)
	if err != nil || link.Type() != "tuntap" {
		t.Fatalf("%s is %v (%v); want the TUN device", DeviceName, link, err)
	}
	a.stop()
	if _, err := a.h.Netlink().LinkByName(DeviceName); err == nil {
		t.Fatal("the user-space device outlived its datapath")
	}
}

// TestUAPISocket: with UAPIDir, the user-space device answers WireGuard's
// configuration protocol on <dir>/flannel-wg.sock as `wg show` asks it,
// and the socket goes with the datapath.
func TestUAPISocket(t *testing.T) {
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	cfg.Mode = ModeIPv4
	_, nodes := newNodes(t, 2, cfg)
	dir := t.TempDir()
	c := nodes[0].config()
	c.UAPIDir = dir
	nodes[0].start(t, c, leasesOf(nodes, nodes[0]))
	waitSynced(t, nodes[0], 0)
	path := filepath.Join(dir, DeviceName+".sock")
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("get=1\n\n"))
	d, err := decodeUAPI(conn, DeviceName) // reads up to the blank line that ends the reply
	conn.Close()
	if err != nil || d.ListenPort != 51820 || len(d.Peers) != 1 || Key(d.Peers[0].PublicKey) != nodes[1].key.PublicKey() {
		t.Fatalf("get over the socket: %+v, %v", d, err)
	}
	nodes[0].stop()
	if _, err := os.Stat(path); err == nil {
		t.Fatal("the socket outlived its device")
	}
}
