//go:build linux

package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/subnetenv"
)

// restoreAgent runs a Network on host as flanneld does: OnState writes
// subnet.env, and a restart asks for the subnet subnet.env names.
type restoreAgent struct {
	*simHost
	env  string
	stop func()
}

// startRestoreAgent runs a Network on h. A restart asks for the subnet
// env names, or, with store and no env, boots from the local state.
func startRestoreAgent(t *testing.T, srv *etcdtest.Server, h *netnstest.Host, env string, store agent.StateStore) *restoreAgent {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := etcd.New(etcd.Options{Endpoints: []string{srv.Endpoint()}, Node: h.Name, TTL: 10 * time.Second, RenewMargin: 8 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var previous lease.Key
	if f, err := subnetenv.Read(env); err == nil && store == nil {
		previous = lease.Key{IPv4: f.Subnet.Masked()}
	}
	a := &restoreAgent{simHost: &simHost{host: h}, env: env}
	cfg := agent.NetworkConfig{
		Datapaths: vxlanOnly,
		Manager:   m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet, Previous: previous,
		OnState: func(st agent.State) {
			a.record(st)
			if err := subnetenv.Write(env, subnetenv.File{Network: st.Config.Network, Subnet: st.Lease.Key.IPv4, MTU: st.MTU}); err != nil {
				t.Errorf("%s: %v", h.Name, err)
			}
		},
	}
	if store != nil {
		cfg.LocalState = store
	}
	a.net, err = agent.NewNetwork(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.net.Run(ctx) }()
	stopped := false
	a.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
		m.Close()
		a.checkEarly(t)
	}
	t.Cleanup(a.stop)
	return a
}

// deviceHolds reports whether a's flannel.1 carries k's address.
func deviceHolds(a *simHost, k lease.Key) bool {
	link, err := a.host.Netlink().LinkByName("flannel.1")
	if err != nil {
		return false
	}
	addrs, _ := a.host.Netlink().AddrList(link, netlink.FAMILY_V4)
	for _, ad := range addrs {
		if ip, _ := netip.AddrFromSlice(ad.IP); ip.Unmap() == k.IPv4.Addr() {
			return true
		}
	}
	return false
}

// TestNetworkRestoredFromBackup: etcd is restored from a backup taken
// before a host moved, so the store holds its older lease and lacks the
// subnet its pods use, which nobody else holds. Whether the host runs
// through the restore or was down and boots from its subnet.env, it
// stays on that subnet: no new lease reaches its embedder, its device
// keeps the address, subnet.env names it, etcd holds it as the host's
// (the older lease deleted), and the other hosts reach it there.
func TestNetworkRestoredFromBackup(t *testing.T) {
	t.Parallel()
	for _, restarted := range []bool{false, true} {
		name := "running"
		if restarted {
			name = "restarted"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := etcdtest.Start(t)
			admin := srv.Client(t)
			if _, err := admin.Put(context.Background(), "/coreos.com/network/config", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
				t.Fatal(err)
			}
			seg := netnstest.NewSegment(t, 3)
			dir := t.TempDir()
			var agents []*restoreAgent
			for _, h := range seg.Hosts {
				agents = append(agents, startRestoreAgent(t, srv, h, filepath.Join(dir, h.Name+".env"), nil))
			}
			all := func() []*simHost {
				var out []*simHost
				for _, a := range agents {
					out = append(out, a.simHost)
				}
				return out
			}
			waitReady(t, all())
			kind := etcdtest.ColdCopy
			if srv.CanBackup(etcdtest.EtcdctlSnapshot) {
				kind = etcdtest.EtcdctlSnapshot
			}
			backup := srv.Backup(kind)
			waitReady(t, all())

			b := agents[1]
			older := b.current().Key
			taker := `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"},"WeftOwner":"taker"}`
			if _, err := admin.Put(context.Background(), "/coreos.com/network/subnets/"+older.String(), taker); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 15*time.Second, "the host to move", func() bool { return b.current().Key != older })
			waitReady(t, all())
			running := b.current().Key
			want := len(b.leaseHistory()) // the leases its embedder was given

			if restarted {
				b.stop()
			}
			srv.Restore(backup, nil)
			if restarted {
				agents[1] = startRestoreAgent(t, srv, b.host, b.env, nil)
				b = agents[1]
				want = 1
			}
			owner := func(k lease.Key) string {
				resp, err := admin.Get(context.Background(), "/coreos.com/network/subnets/"+k.String())
				if err != nil || len(resp.Kvs) == 0 {
					return ""
				}
				var a lease.Attrs
				json.Unmarshal(resp.Kvs[0].Value, &a)
				return a.Owner
			}
			testutil.WaitFor(t, 20*time.Second, "etcd to hold the host's running subnet, and not its older one", func() bool {
				return owner(running) == b.host.Name && owner(older) != b.host.Name
			})
			waitReady(t, all())
			if h := b.leaseHistory(); len(h) != want || b.current().Key != running {
				var keys []lease.Key
				for _, l := range h {
					keys = append(keys, l.Key)
				}
				t.Fatalf("the host's leases after the restore: %v; it ran on %v", keys, running)
			}
			if !deviceHolds(b.simHost, running) {
				t.Errorf("the host's device does not carry %v", running)
			}
			if f, err := subnetenv.Read(b.env); err != nil || f.Subnet.Masked() != running.IPv4 {
				t.Errorf("subnet.env names %v (%v), want %v", f.Subnet, err, running)
			}
			for _, other := range []*restoreAgent{agents[0], agents[2]} {
				if err := reach(t, other.simHost, b.simHost); err != nil {
					t.Errorf("%s -> %s on %v: %v", other.host.Name, b.host.Name, running, err)
				}
			}
		})
	}
}
