//go:build linux

package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/probe"
	"github.com/weftnet/weft/vxlan"
)

const benchPeers = 20000

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchNode is a Network with benchPeers peers from a real etcd, in a
// namespace of its own, with a Prober that has probed them.
type benchNode struct {
	net    *agent.Network
	prober *probe.Prober
	cli    *clientv3.Client
	lease  clientv3.LeaseID
	// handed counts the peers handed to the datapath (OnPeers).
	handed atomic.Int64
	gen    int // MAC generation last written
}

func peerSubnet(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + i/250), byte(i % 250), 0}), 24)
}

func peerValue(i, gen int) string {
	return fmt.Sprintf(`{"PublicIP":"172.31.%d.%d","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:%02x:00:%02x:%02x:%02x"},"WeftOwner":"peer-%d"}`,
		i/250, 1+i%250, gen%256, byte(i>>16), byte(i>>8), byte(i), i)
}

// writePeers writes the leases of peers [from, to) with MAC generation gen.
func (n *benchNode) writePeers(b *testing.B, from, to, gen int) {
	for start := from; start < to; start += 100 {
		var ops []clientv3.Op
		for i := start; i < min(to, start+100); i++ {
			key := "/coreos.com/network/subnets/" + peerSubnet(i).Addr().String() + "-24"
			ops = append(ops, clientv3.OpPut(key, peerValue(i, gen), clientv3.WithLease(n.lease)))
		}
		if _, err := n.cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

func newBenchNode(b *testing.B) *benchNode {
	netnstest.RequirePrivileged(b)
	h := netnstest.NewSegment(b, 1).Hosts[0]
	srv := etcdtest.Start(b)
	n := &benchNode{cli: srv.Client(b)}
	ctx := context.Background()
	if _, err := n.cli.Put(ctx, "/coreos.com/network/config", `{"Network": "10.0.0.0/8", "SubnetMin": "10.250.0.0", "Backend": {"Type": "vxlan"}}`); err != nil {
		b.Fatal(err)
	}
	l, err := n.cli.Grant(ctx, 3600)
	if err != nil {
		b.Fatal(err)
	}
	n.lease = l.ID
	n.writePeers(b, 0, benchPeers, 0)
	m, err := etcd.New(etcd.Options{Endpoints: []string{srv.Endpoint()}, Node: h.Name, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	n.net, err = agent.NewNetwork(agent.NetworkConfig{
		Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet, ResyncInterval: time.Hour,
		OnPeers: func(evs []agent.PeerEvent) { n.handed.Add(int64(len(evs))) },
	})
	if err != nil {
		b.Fatal(err)
	}
	n.prober, err = probe.New(probe.Config{Namespace: h.Handle, Targets: probe.NetworkTargets(n.net), Sample: probe.MaxSample, Interval: time.Second, Timeout: 500 * time.Millisecond, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { n.net.Run(runCtx) })
	b.Cleanup(func() { cancel(); wg.Wait() })
	n.waitSynced(b, time.Minute)
	if c := n.v4().Counts(); c.Programmed != benchPeers {
		b.Fatalf("%d of %d peers programmed", c.Programmed, benchPeers)
	}
	return n
}

func (n *benchNode) v4() *vxlan.Datapath { v4, _ := vxlan.DatapathsOf(n.net.Datapaths()); return v4 }

func (n *benchNode) waitSynced(b *testing.B, d time.Duration) {
	deadline := time.Now().Add(d)
	for ok, why := n.net.Ready(); !ok; ok, why = n.net.Ready() {
		if time.Now().After(deadline) {
			b.Fatalf("not ready: %s", why)
		}
		time.Sleep(time.Millisecond)
	}
}

// change rewrites the MACs of count peers and waits until the datapath
// has applied them: handed over (OnPeers) and synced.
func (n *benchNode) change(b *testing.B, count int) {
	n.gen++
	want := n.handed.Load() + int64(count)
	n.writePeers(b, 0, count, n.gen)
	deadline := time.Now().Add(time.Minute)
	for n.handed.Load() < want || !n.v4().Synced() {
		if time.Now().After(deadline) {
			b.Fatalf("the change of %d peers was not applied: %d of %d handed over", count, n.handed.Load()-(want-int64(count)), count)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkStatus is the cost of one /status answer at 20,000 peers,
// built and encoded: the summary only, the default page, the whole set
// in MaxLimit pages (what weftctl peers fetches), the failing peers (a
// filter over all of them), and one peer by name.
func BenchmarkStatus(b *testing.B) {
	n := newBenchNode(b)
	src := Source{Network: n.net, Prober: n.prober}
	for _, tc := range []struct {
		name string
		q    Query
	}{
		{"summary", Query{Limit: -1}},
		{"page", Query{}},
		{"failing", Query{Failing: true}},
		{"peer", Query{Peer: "peer-12345"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				doc := src.Document(tc.q)
				if err := json.NewEncoder(io.Discard).Encode(doc); err != nil {
					b.Fatal(err)
				}
				if tc.name == "peer" && len(doc.Peers) != 1 {
					b.Fatalf("peer-12345: %d peers", len(doc.Peers))
				}
			}
		})
	}
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			seen := 0
			q := Query{Limit: MaxLimit}
			for {
				doc := src.Document(q)
				json.NewEncoder(io.Discard).Encode(doc)
				seen += len(doc.Peers)
				if doc.Next == "" {
					break
				}
				q.After = doc.Next
			}
			if seen != benchPeers {
				b.Fatalf("paged through %d peers, want %d", seen, benchPeers)
			}
		}
	})
}

// BenchmarkProgrammingUnderLoad is the time from an etcd write to the
// datapath applying it, for one peer's change (the per-peer fast path)
// and for 2,000 peers' (a full reconcile), at 20,000 peers, under each
// load:
//
//   - none;
//   - status: ten /status answers a second, each of every peer (what
//     weftctl peers fetches), a dashboard polled by a crowd;
//   - status-flood: such answers back to back, as fast as one core
//     builds them, which on a two-core machine also takes CPU from the
//     programming; it shows that no lock is held against it;
//   - probe: 1,000 peers (MaxSample) probed every second, and as many
//     re-probed, 250 times the default rate (8 every 10s).
//
// The loads must not delay the programming measurably.
func BenchmarkProgrammingUnderLoad(b *testing.B) {
	n := newBenchNode(b)
	src := Source{Network: n.net, Prober: n.prober}
	for _, load := range []string{"none", "status", "status-flood", "probe"} {
		for _, count := range []int{1, 2000} {
			b.Run(fmt.Sprintf("load=%s/peers=%d", load, count), func(b *testing.B) {
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				var documents atomic.Int64
				switch load {
				case "status", "status-flood":
					every := 100 * time.Millisecond
					if load == "status-flood" {
						every = 0
					}
					wg.Go(func() {
						for t := time.Now(); ctx.Err() == nil; t = t.Add(every) {
							time.Sleep(time.Until(t))
							json.NewEncoder(io.Discard).Encode(src.Document(Query{Limit: MaxLimit}))
							documents.Add(1)
						}
					})
				case "probe":
					wg.Go(func() { n.prober.Run(ctx) })
				}
				loadStart := time.Now()
				time.Sleep(100 * time.Millisecond) // the load under way
				for b.Loop() {
					n.change(b, count)
				}
				cancel()
				wg.Wait()
				if load != "none" && load != "probe" {
					b.ReportMetric(float64(documents.Load())/time.Since(loadStart).Seconds(), "documents/s")
				}
			})
		}
	}
}
