//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/localstate"
	"github.com/weftnet/weft/vxlan"
)

// BenchmarkOfflineBoot is a reboot cut off from etcd, from the agent's
// start to Ready: every cached peer admitted and programmed, at 1,000 and
// 5,000 peers. The Manager is a real etcd client whose endpoint does not
// answer; OfflineAfter is 1ms, so that the figure is the boot's own cost
// (a daemon adds its OfflineAfter, 5s by default). Each boot starts with
// no device, as after a reboot.
func BenchmarkOfflineBoot(b *testing.B) {
	netnstest.RequirePrivileged(b)
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			h := netnstest.NewSegment(b, 1).Hosts[0]
			id := localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name}
			store := localstate.NewStore(b.TempDir(), id, 0)
			if _, err := store.Save(offlineBenchState(h, n)); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				if link, err := h.Netlink().LinkByName("flannel.1"); err == nil {
					h.Netlink().LinkDel(link)
				}
				m, err := etcd.New(etcd.Options{Endpoints: []string{"http://127.0.0.1:9"}, Node: h.Name, Logger: quietLog})
				if err != nil {
					b.Fatal(err)
				}
				nw, err := NewNetwork(NetworkConfig{Datapaths: map[string]lease.DatapathFactory{"vxlan": vxlan.NewFactory(vxlan.FactoryConfig{})}, Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quietLog,
					LocalState: store, OfflineAfter: time.Millisecond, ResyncInterval: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				b.StartTimer()
				go func() { done <- nw.Run(ctx) }()
				deadline := time.Now().Add(time.Minute)
				for ok, why := nw.Ready(); !ok; ok, why = nw.Ready() {
					if time.Now().After(deadline) {
						b.Fatalf("not ready: %s", why)
					}
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				programmed := 0
				for _, p := range vxlan.DatapathOf(nw.v4).Status().Reconciler.Peers {
					if p.Programmed {
						programmed++
					}
				}
				if programmed != n {
					b.Fatalf("ready with %d of %d cached peers programmed", programmed, n)
				}
				cancel()
				<-done
				m.Close()
				b.StartTimer()
			}
		})
	}
}

// offlineBenchState is a state with n peers: 10.a.b.0/24 subnets of
// 10.0.0.0/8, the node's own 10.250.0.0/24.
func offlineBenchState(h *netnstest.Host, n int) localstate.State {
	own := lease.Lease{
		Key:   lease.Key{IPv4: netip.MustParsePrefix("10.250.0.0/24")},
		Attrs: lease.Attrs{PublicIP: h.Addr.Addr(), BackendType: "vxlan", Owner: h.Name, BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:fa:00:00"}`)},
	}
	return localstate.State{
		Config: json.RawMessage(`{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`),
		Lease:  own, VtepMAC: "0e:00:00:fa:00:00", Peers: offlineBenchPeers(n), PeersAt: time.Now(),
	}
}

func offlineBenchPeers(n int) []lease.Lease {
	out := make([]lease.Lease, n)
	for i, p := range benchPeers(n) {
		data, _ := json.Marshal(vxlan.BackendData{VNI: 1, VtepMAC: p.VtepMAC})
		out[i] = lease.Lease{Key: lease.Key{IPv4: p.Subnet}, Seniority: int64(i + 1),
			Attrs: lease.Attrs{PublicIP: p.PublicIP, BackendType: "vxlan", Owner: fmt.Sprint("peer-", i+1), BackendData: data}}
	}
	return out
}
