//go:build linux

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/vxlan"
)

// protectedAddr stands for the control plane's address inside the Network:
// every agent of these tests protects it. It is in 10.244.0.0/24, which the
// allocator never gives out (SubnetMin is the second subnet), as are the
// hostile keys that must not overwrite an honest node's key.
var protectedAddr = netip.MustParsePrefix("10.244.0.100/32")

// overlay is a segment of simulated hosts and an etcd with the network
// config, on which agents can be started one by one.
type overlay struct {
	srv   *etcdtest.Server
	admin *clientv3.Client
	seg   *netnstest.Segment
	log   *slog.Logger
}

func newOverlay(t *testing.T, hosts int) *overlay {
	t.Helper()
	o := &overlay{srv: etcdtest.Start(t), seg: netnstest.NewSegment(t, hosts), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	o.admin = o.srv.Client(t)
	o.put(t, "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	return o
}

func (o *overlay) put(t *testing.T, key, value string) {
	t.Helper()
	if _, err := o.admin.Put(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
}

func (o *overlay) del(t *testing.T, key string) {
	t.Helper()
	if _, err := o.admin.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}

// start runs a Network on host i until the end of the test.
func (o *overlay) start(t *testing.T, i int) *simHost {
	t.Helper()
	h := o.seg.Hosts[i]
	m, err := etcd.New(etcd.Options{Endpoints: []string{o.srv.Endpoint()}, Node: h.Name, TTL: 30 * time.Second, RenewMargin: 10 * time.Second, Logger: o.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	a := &simHost{host: h}
	a.net = runNetwork(t, agent.NetworkConfig{
		Datapaths: vxlanOnly,
		Manager:   m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: o.log,
		ResyncInterval: time.Second, Protected: []netip.Prefix{protectedAddr},
		OnState: a.record,
	})
	return a
}

// vtepMAC returns the VTEP MAC an agent publishes.
func (a *simHost) vtepMAC(t *testing.T) string {
	t.Helper()
	var bd vxlan.BackendData
	if err := json.Unmarshal(a.current().Attrs.BackendData, &bd); err != nil {
		t.Fatal(err)
	}
	return bd.VtepMAC.String()
}

// peerValue is a lease value as a vxlan node writes it.
func peerValue(public, mac string) string {
	return fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":%q}}`, public, mac)
}

// kernelState is what a host's flannel.1 carries: routes of the datapath's
// protocol, permanent neighbours and permanent FDB entries.
type kernelState struct {
	routes map[netip.Prefix]bool
	neighs map[netip.Addr]string
	fdb    map[string]netip.Addr
}

func readKernel(t *testing.T, h *netnstest.Host) kernelState {
	t.Helper()
	nl := h.Netlink()
	link, err := nl.LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	ks := kernelState{routes: map[netip.Prefix]bool{}, neighs: map[netip.Addr]string{}, fdb: map[string]netip.Addr{}}
	routes, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: vxlan.DefaultRouteProtocol, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			ones, _ := r.Dst.Mask.Size()
			a, _ := netip.AddrFromSlice(r.Dst.IP)
			ks.routes[netip.PrefixFrom(a.Unmap(), ones)] = true
		}
	}
	neighs, err := nl.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.State&unix.NUD_PERMANENT != 0 {
			a, _ := netip.AddrFromSlice(n.IP)
			ks.neighs[a.Unmap()] = n.HardwareAddr.String()
		}
	}
	fdb, err := nl.NeighList(link.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdb {
		if n.State&unix.NUD_PERMANENT != 0 && n.IP != nil {
			a, _ := netip.AddrFromSlice(n.IP)
			ks.fdb[n.HardwareAddr.String()] = a.Unmap()
		}
	}
	return ks
}

// expectPeers checks that a host's kernel state is exactly what the given
// peers need.
func expectPeers(t *testing.T, a *simHost, peers []admit.Peer) {
	t.Helper()
	ks := readKernel(t, a.host)
	want := kernelState{routes: map[netip.Prefix]bool{}, neighs: map[netip.Addr]string{}, fdb: map[string]netip.Addr{}}
	for _, p := range peers {
		want.routes[p.Subnet] = true
		want.neighs[p.Subnet.Addr()] = p.VtepMAC.String()
		want.fdb[p.VtepMAC.String()] = p.PublicIP
	}
	if fmt.Sprint(ks.routes) != fmt.Sprint(want.routes) || fmt.Sprint(ks.neighs) != fmt.Sprint(want.neighs) || fmt.Sprint(ks.fdb) != fmt.Sprint(want.fdb) {
		t.Fatalf("%s's kernel state:\n routes %v\n neighs %v\n fdb %v\nwant:\n routes %v\n neighs %v\n fdb %v",
			a.host.Name, ks.routes, ks.neighs, ks.fdb, want.routes, want.neighs, want.fdb)
	}
}

// honestPeers returns the peers each agent should program: every other
// agent's lease.
func honestPeers(t *testing.T, agents []*simHost, self *simHost) []admit.Peer {
	var out []admit.Peer
	for _, o := range agents {
		if o == self {
			continue
		}
		mac, err := lease.ParseMAC(o.vtepMAC(t))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, admit.Peer{Subnet: o.current().Key.IPv4, PublicIP: o.host.Addr.Addr(), VtepMAC: admit.MAC(mac)})
	}
	return out
}

// watchReadiness samples every agent's readiness every 5 ms until the
// Sampler's Check.
func watchReadiness(agents []*simHost) *testutil.Sampler {
	return testutil.Sample(5*time.Millisecond, func() (lapses []string) {
		for _, a := range agents {
			if ok, why := a.net.Ready(); !ok {
				lapses = append(lapses, a.host.Name+": "+why)
			}
		}
		return lapses
	})
}

// kernelWatch records every change the kernel reports to the honest
// peers' routes, neighbours and FDB entries on a set of hosts: while only
// hostile keys come and go, there must be none.
type kernelWatch struct {
	mu      sync.Mutex
	touched []string
	stop    chan struct{}
}

func watchKernel(t *testing.T, agents []*simHost) *kernelWatch {
	t.Helper()
	w := &kernelWatch{stop: make(chan struct{})}
	for _, a := range agents {
		honest := honestPeers(t, agents, a)
		subnets, gateways, macs := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, p := range honest {
			subnets[p.Subnet.String()], gateways[p.Subnet.Addr().String()], macs[p.VtepMAC.String()] = true, true, true
		}
		routes := make(chan netlink.RouteUpdate, 1024)
		neighs := make(chan netlink.NeighUpdate, 1024)
		ns := a.host.Handle
		if err := netlink.RouteSubscribeWithOptions(routes, w.stop, netlink.RouteSubscribeOptions{Namespace: &ns}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.NeighSubscribeWithOptions(neighs, w.stop, netlink.NeighSubscribeOptions{Namespace: &ns}); err != nil {
			t.Fatal(err)
		}
		name := a.host.Name
		note := func(what string) {
			w.mu.Lock()
			w.touched = append(w.touched, name+": "+what)
			w.mu.Unlock()
		}
		go func() {
			for u := range routes {
				if u.Dst != nil && subnets[u.Dst.String()] {
					note(fmt.Sprintf("route event %d for %s", u.Type, u.Dst))
				}
			}
		}()
		go func() {
			for u := range neighs {
				switch {
				case u.Family == unix.AF_BRIDGE && macs[u.HardwareAddr.String()]:
					note(fmt.Sprintf("fdb event %d for %s", u.Type, u.HardwareAddr))
				case u.Family != unix.AF_BRIDGE && u.IP != nil && gateways[u.IP.String()] && u.State&unix.NUD_PERMANENT != 0:
					note(fmt.Sprintf("neighbour event %d for %s", u.Type, u.IP))
				}
			}
		}()
	}
	return w
}

func (w *kernelWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.touched) > 0 {
		t.Errorf("the honest peers' kernel objects changed %d times, first: %s", len(w.touched), w.touched[0])
	}
}

// rejected reports whether an agent rejects the lease with key k, and why.
func rejected(a *simHost, k string) (admit.Reason, bool) {
	for _, v := range a.net.Rejected() {
		if v.Peer.Key.String() == k {
			return v.Reason, true
		}
	}
	return "", false
}

// TestHostileLeases writes, one case at a time, leases that are out of
// bounds, unreachable, or that claim what honest peers hold, among three
// honest agents on real etcd and real namespaces. While each exists and
// after it is deleted, every agent stays ready, programs exactly the honest
// peers, and passes traffic between them; an agent started while all of
// them exist converges and passes traffic too.
func TestHostileLeases(t *testing.T) {
	t.Parallel()
	o := newOverlay(t, 4)
	agents := []*simHost{o.start(t, 0), o.start(t, 1), o.start(t, 2)}
	waitReady(t, agents)
	for _, a := range agents {
		// The others' leases may arrive a moment after this one's ready.
		testutil.WaitFor(t, 10*time.Second, "the honest peers", func() bool { return len(readKernel(t, a.host).routes) == len(agents)-1 })
	}
	a0, a1 := agents[0], agents[1]
	sub0 := a0.current().Key.IPv4
	k := func(p string) string { return "/coreos.com/network/subnets/" + p }
	dummy := "10.244.0.1/26" // a connected network inside the overlay's range, on every host
	for _, h := range o.seg.Hosts {
		d := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "weftdummy"}}
		if err := h.Netlink().LinkAdd(d); err != nil {
			t.Fatal(err)
		}
		h.AddrAdd(t, "weftdummy", netip.MustParsePrefix(dummy))
	}

	cases := []struct {
		name, key, value string
		want             admit.Reason // on a2, a bystander to every claim
	}{
		{"half the address space", "128.0.0.0-1", peerValue("172.30.0.77", "0e:00:00:00:77:01"), admit.ReasonSubnet},
		{"outside the network", "10.245.3.0-24", peerValue("172.30.0.77", "0e:00:00:00:77:02"), admit.ReasonSubnet},
		{"the underlay's subnet", "172.30.0.0-24", peerValue("172.30.0.77", "0e:00:00:00:77:03"), admit.ReasonSubnet},
		{"the control plane's address", "10.244.0.100-32", peerValue("172.30.0.77", "0e:00:00:00:77:04"), admit.ReasonProtected},
		{"a connected network", "10.244.0.0-26", peerValue("172.30.0.77", "0e:00:00:00:77:05"), admit.ReasonConnected},
		{"multicast MAC", "10.244.0.128-25", peerValue("172.30.0.77", "01:00:5e:00:00:01"), admit.ReasonVtepMAC},
		{"broadcast MAC", "10.244.0.128-25", peerValue("172.30.0.77", "ff:ff:ff:ff:ff:ff"), admit.ReasonVtepMAC},
		{"another peer's MAC elsewhere", "10.244.0.128-25", peerValue("172.30.0.77", a1.vtepMAC(t)), admit.ReasonIdentityConflict},
		{"another peer's MAC and address", "10.244.0.128-25", peerValue(a1.host.Addr.Addr().String(), a1.vtepMAC(t)), admit.ReasonIdentityConflict},
		{"loopback", "10.244.0.128-25", peerValue("127.0.0.1", "0e:00:00:00:77:06"), admit.ReasonPublicIP},
		{"multicast address", "10.244.0.128-25", peerValue("224.0.0.1", "0e:00:00:00:77:07"), admit.ReasonPublicIP},
		{"admin-scoped multicast", "10.244.0.128-25", peerValue("239.1.1.1", "0e:00:00:00:77:08"), admit.ReasonPublicIP},
		{"broadcast", "10.244.0.128-25", peerValue("255.255.255.255", "0e:00:00:00:77:09"), admit.ReasonPublicIP},
		{"a1's address", "10.244.0.128-25", peerValue(a1.host.Addr.Addr().String(), "0e:00:00:00:77:0a"), admit.ReasonIdentityConflict},
		{"a2's own address", "10.244.0.128-25", peerValue(agents[2].host.Addr.Addr().String(), "0e:00:00:00:77:0f"), admit.ReasonPublicIP},
		{"dual-stack over a peer's subnet", strings.Replace(sub0.String(), "/", "-", 1) + "&fd00:77::-64",
			`{"PublicIP":"172.30.0.77","PublicIPv6":"fd30::77","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:77:0b"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:77:0c"}}`,
			admit.ReasonSubnetConflict},
		{"inside a peer's subnet", strings.Replace(netip.PrefixFrom(sub0.Addr().Next(), 25).Masked().String(), "/", "-", 1),
			peerValue("172.30.0.77", "0e:00:00:00:77:0d"), admit.ReasonSubnetConflict},
		{"a /25 inside a peer's subnet, upper half", strings.Replace(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, sub0.Addr().As4()[2], 128}), 25).String(), "/", "-", 1),
			peerValue("172.30.0.77", "0e:00:00:00:77:0e"), admit.ReasonSubnetConflict},
	}
	ready := watchReadiness(agents)
	kernel := watchKernel(t, agents)
	mesh := func(stage string) {
		t.Helper()
		for _, a := range agents {
			expectPeers(t, a, honestPeers(t, agents, a))
		}
		for _, from := range agents {
			for _, to := range agents {
				if from != to {
					if err := reach(t, from, to); err != nil {
						t.Fatalf("%s: %s -> %s: %v", stage, from.host.Name, to.host.Name, err)
					}
				}
			}
		}
	}
	for _, tc := range cases {
		o.put(t, k(tc.key), tc.value)
		for _, a := range agents {
			testutil.WaitFor(t, 10*time.Second, tc.name+": the rejection", func() bool { _, ok := rejected(a, tc.key); return ok })
		}
		if r, _ := rejected(agents[2], tc.key); r != tc.want {
			t.Errorf("%s: %s rejects it for %q, want %q", tc.name, agents[2].host.Name, r, tc.want)
		}
		mesh(tc.name + ", key present")
		o.del(t, k(tc.key))
		for _, a := range agents {
			testutil.WaitFor(t, 10*time.Second, tc.name+": the deletion", func() bool { _, ok := rejected(a, tc.key); return !ok })
		}
		mesh(tc.name + ", key deleted")
	}

	// Every hostile key at once (one key per subnet), then a new node.
	seen := map[string]bool{}
	for _, tc := range cases {
		if !seen[tc.key] {
			seen[tc.key] = true
			o.put(t, k(tc.key), tc.value)
		}
	}
	for _, a := range agents {
		testutil.WaitFor(t, 10*time.Second, "every rejection", func() bool { return len(a.net.Rejected()) == len(seen) })
	}
	ready.Check(t, "agents were not ready")
	kernel.check(t)
	late := o.start(t, 3)
	agents = append(agents, late)
	waitReady(t, agents)
	testutil.WaitFor(t, 10*time.Second, "the late agent's rejections", func() bool { return len(late.net.Rejected()) == len(seen) })
	for _, a := range agents {
		testutil.WaitFor(t, 10*time.Second, "the late agent as a peer", func() bool { return len(readKernel(t, a.host).routes) == len(agents)-1 })
	}
	mesh("a node started among hostile keys")
	v4 := 0
	for _, v := range late.net.Rejected() {
		if !v.Peer.IPv6 {
			v4++
		}
	}
	if v4 != len(seen) {
		t.Errorf("the status lists %d rejected IPv4 peers, want %d", v4, len(seen))
	}
}

// TestKernelRefusalIsOnePeers: on a host where another program's route
// holds one peer's subnet, the kernel refuses that peer's route. The node
// still starts (its lease is announced, as subnet.env is written), stays
// ready, reaches the other peers, reports the one as failed, and programs
// it once the way is clear.
func TestKernelRefusalIsOnePeers(t *testing.T) {
	t.Parallel()
	o := newOverlay(t, 3)
	b, c := o.start(t, 1), o.start(t, 2)
	waitReady(t, []*simHost{b, c})
	h := o.seg.Hosts[0]
	blocked := b.current().Key.IPv4
	route := &netlink.Route{Dst: netipNet(blocked), Gw: netip.MustParseAddr("172.30.0.99").AsSlice(), Protocol: unix.RTPROT_STATIC}
	if err := h.Netlink().RouteAdd(route); err != nil {
		t.Fatal(err)
	}
	a := o.start(t, 0)
	waitReady(t, []*simHost{a, b, c})
	testutil.WaitFor(t, 10*time.Second, "the refusal to show", func() bool {
		v4 := v4Datapath(a.net)
		st := v4.Status()
		for _, p := range st.Reconciler.Peers {
			if p.Peer.Subnet == blocked {
				return st.FailedPeers == 1 && !p.Programmed && strings.Contains(p.Err, "in the way")
			}
		}
		return false
	})
	if ok, why := a.net.Ready(); !ok {
		t.Fatalf("one peer's refusal made the node not ready: %s", why)
	}
	for _, pair := range [][2]*simHost{{a, c}, {c, a}} {
		if err := reach(t, pair[0], pair[1]); err != nil {
			t.Fatalf("%s -> %s: %v", pair[0].host.Name, pair[1].host.Name, err)
		}
	}
	if err := h.Netlink().RouteDel(route); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the retry to program the peer", func() bool {
		v4 := v4Datapath(a.net)
		return v4.Status().FailedPeers == 0
	})
	for _, pair := range [][2]*simHost{{a, b}, {b, a}} {
		if err := reach(t, pair[0], pair[1]); err != nil {
			t.Fatalf("%s -> %s: %v", pair[0].host.Name, pair[1].host.Name, err)
		}
	}
	expectPeers(t, a, honestPeers(t, []*simHost{a, b, c}, a))
}

// listLeases reads every subnet key as lease/etcd decodes them, skipping
// what it skips.
func listLeases(t *testing.T, o *overlay) []lease.Lease {
	t.Helper()
	resp, err := o.admin.Get(context.Background(), "/coreos.com/network/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []lease.Lease
	for _, kv := range resp.Kvs {
		k, err := lease.ParseKey(strings.TrimPrefix(string(kv.Key), "/coreos.com/network/subnets/"))
		if err != nil {
			continue
		}
		l := lease.Lease{Key: k, Seniority: kv.CreateRevision}
		if l.Attrs.UnmarshalJSON(kv.Value) != nil || l.Attrs.Validate() != nil {
			continue
		}
		out = append(out, l)
	}
	return out
}

// TestPropertyAdmissionOnKernel drives a random history of honest and
// hostile keys through real etcd to an agent in a real namespace. After
// every step the agent's kernel state is exactly what admission computes
// from scratch over the keys in etcd, and every honest peer is in it.
func TestPropertyAdmissionOnKernel(t *testing.T) {
	t.Parallel()
	o := newOverlay(t, 1)
	// Honest peers first, so that they are the oldest.
	var honest []string
	for i := range 5 {
		key := fmt.Sprintf("10.244.%d.0-24", 100+i)
		o.put(t, "/coreos.com/network/subnets/"+key, peerValue(fmt.Sprintf("172.30.1.%d", 100+i), fmt.Sprintf("0e:00:00:00:aa:%02x", i)))
		honest = append(honest, key)
	}
	a := o.start(t, 0)
	waitReady(t, []*simHost{a})
	r := newRand(t)
	subnets := func() string {
		third := 100 + r.IntN(7)
		switch r.IntN(6) {
		case 0:
			return fmt.Sprintf("10.244.%d.128-25", third)
		case 1:
			return fmt.Sprintf("10.244.%d.0-23", third&^1)
		case 2:
			return fmt.Sprintf("10.%d.0.0-16", 243+r.IntN(3))
		case 3:
			return fmt.Sprintf("10.244.%d.0-24&fd00:%d::-64", third, r.IntN(3))
		}
		return fmt.Sprintf("10.244.%d.0-24", 110+r.IntN(6))
	}
	values := func() string {
		ip := fmt.Sprintf("172.30.1.%d", 100+r.IntN(10))
		mac := fmt.Sprintf("0e:00:00:00:aa:%02x", r.IntN(10))
		switch r.IntN(8) {
		case 0:
			ip = []string{"127.0.0.1", "224.0.0.1", "255.255.255.255", a.host.Addr.Addr().String()}[r.IntN(4)]
		case 1:
			mac = []string{"ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00:00:00:00:00:00"}[r.IntN(3)]
		}
		return peerValue(ip, mac)
	}
	var written []string
	judged, admitted := 0, 0
	defer func() { t.Logf("%d verdicts checked, %d admitted", judged, admitted) }()
	for step := range 40 {
		for range 1 + r.IntN(3) {
			if len(written) > 0 && r.IntN(3) == 0 {
				i := r.IntN(len(written))
				o.del(t, "/coreos.com/network/subnets/"+written[i])
				written = append(written[:i], written[i+1:]...)
				continue
			}
			key := subnets()
			if !slices.Contains(honest, key) {
				o.put(t, "/coreos.com/network/subnets/"+key, values())
				written = append(written, key)
			}
		}
		leases := listLeases(t, o)
		var want []admit.Peer
		testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("step %d to reach the kernel", step), func() bool {
			want, _ = admit.Compute(a.net.Facts(), leases)
			ks := readKernel(t, a.host)
			if len(ks.routes) != len(want) {
				return false
			}
			for _, p := range want {
				if !ks.routes[p.Subnet] || ks.neighs[p.Subnet.Addr()] != p.VtepMAC.String() || ks.fdb[p.VtepMAC.String()] != p.PublicIP {
					return false
				}
			}
			return true
		})
		expectPeers(t, a, want)
		judged += len(leases)
		admitted += len(want)
		for _, h := range honest {
			found := false
			for _, p := range want {
				found = found || p.Key.String() == h
			}
			if !found {
				t.Fatalf("step %d: honest peer %s is not admitted", step, h)
			}
		}
	}
}

// newRand returns a random source whose seed the test logs, and which
// WEFT_SEED sets, so that a failing history can be replayed.
func newRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("WEFT_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (set WEFT_SEED to replay)", seed)
	return rand.New(rand.NewPCG(seed, 1))
}

// TestOneNodesLeasesMoveTogether: a node holding two leases (moving
// subnets) publishes one VTEP MAC on both; when both move to a new address
// in one batch, neither is refused for disagreeing with the other's old
// address, and the FDB entry follows.
func TestOneNodesLeasesMoveTogether(t *testing.T) {
	t.Parallel()
	h, m, quiet := oneHost(t, `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`)
	script := &scriptedWatch{Manager: m, batches: make(chan lease.Batch)}
	n := runNetwork(t, agent.NetworkConfig{Datapaths: vxlanOnly, Manager: script, Node: h.Name, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet})
	leaseAt := func(subnet, public string) lease.Lease {
		return lease.Lease{Key: lease.Key{IPv4: netip.MustParsePrefix(subnet)}, Seniority: 1, Attrs: lease.Attrs{
			PublicIP: netip.MustParseAddr(public), BackendType: "vxlan", Owner: "mover",
			BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:bb:01"}`)}}
	}
	script.batches <- lease.Batch{Snapshot: true, Events: []lease.Event{
		{Type: lease.Added, Lease: leaseAt("10.244.50.0/24", "172.30.9.1")},
		{Type: lease.Added, Lease: leaseAt("10.244.51.0/24", "172.30.9.1")},
	}}
	fdbTo := func(ip string) bool {
		_, ok := readKernel(t, h).fdb["0e:00:00:00:bb:01"]
		return ok && readKernel(t, h).fdb["0e:00:00:00:bb:01"].String() == ip
	}
	testutil.WaitFor(t, 10*time.Second, "both leases programmed", func() bool { return len(readKernel(t, h).routes) == 2 && fdbTo("172.30.9.1") })
	script.batches <- lease.Batch{Events: []lease.Event{
		{Type: lease.Changed, Lease: leaseAt("10.244.50.0/24", "172.30.9.2")},
		{Type: lease.Changed, Lease: leaseAt("10.244.51.0/24", "172.30.9.2")},
	}}
	testutil.WaitFor(t, 10*time.Second, "the FDB entry to follow", func() bool { return fdbTo("172.30.9.2") })
	v4 := v4Datapath(n)
	for _, p := range v4.Status().Reconciler.Peers {
		if p.Err != "" {
			t.Errorf("peer %s failed: %s", p.Peer.Subnet, p.Err)
		}
	}
	if len(n.Rejected()) != 0 {
		t.Errorf("rejected %+v", n.Rejected())
	}
}
