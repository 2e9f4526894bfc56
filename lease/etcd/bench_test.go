package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/lease"
)

// countingClient returns a client that counts the RPCs it makes.
func countingClient(b *testing.B, endpoint string, rpcs *atomic.Int64) *clientv3.Client {
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		rpcs.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// fillLeases creates n leases in 10.0.0.0/8, attached to one etcd lease,
// 128 keys per Txn.
func fillLeases(b *testing.B, c *clientv3.Client, n int) {
	ctx := context.Background()
	g, err := c.Grant(ctx, 3600)
	if err != nil {
		b.Fatal(err)
	}
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		k := lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte((i + 1) >> 8), byte(i + 1), 0}), 24)}
		a := attrsFor(i)
		a.Owner = fmt.Sprint("filler-", i)
		raw, _ := json.Marshal(a)
		ops = append(ops, clientv3.OpPut(testPrefix+"/subnets/"+k.String(), string(raw), clientv3.WithLease(g.ID)))
		if len(ops) == 128 {
			flush()
		}
	}
	flush()
}

// BenchmarkAcquire acquires a new subnet with N leases already in etcd,
// each iteration as a new node. rpcs/op counts the node's etcd RPCs.
// flanneld makes 2N+9 RPCs for the same job (a TimeToLive per lease).
func BenchmarkAcquire(b *testing.B) {
	for _, n := range []int{0, 1000, 5000, 20000} {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			s := etcdtest.Start(b)
			admin := etcdtest.NewClient(b, s.Endpoint())
			if _, err := admin.Put(context.Background(), testPrefix+"/config", `{"Network": "10.0.0.0/8"}`); err != nil {
				b.Fatal(err)
			}
			fillLeases(b, admin, n)
			var rpcs atomic.Int64
			client := countingClient(b, s.Endpoint(), &rpcs)
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			var total int64
			i := 0
			for b.Loop() {
				m, err := New(Options{Client: client, Node: fmt.Sprint("bench-", i), Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				before := rpcs.Load()
				l, err := m.Acquire(context.Background(), lease.AcquireRequest{Attrs: attrsFor(i)})
				if err != nil {
					b.Fatal(err)
				}
				total += rpcs.Load() - before
				b.StopTimer()
				// Keep the lease count at n.
				h, _ := m.getHeld(l.Key)
				if _, err := admin.Revoke(context.Background(), h.id); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				i++
			}
			b.ReportMetric(float64(total)/float64(i), "rpcs/op")
		})
	}
}

// BenchmarkWatchLeases measures events per second from etcd writes to a
// WatchLeases consumer: b.N leases written 100 per Txn by another client.
func BenchmarkWatchLeases(b *testing.B) {
	s := etcdtest.Start(b)
	admin := etcdtest.NewClient(b, s.Endpoint())
	m, err := New(Options{Client: etcdtest.NewClient(b, s.Endpoint()), Node: "watcher", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan lease.Batch, 64)
	go m.WatchLeases(ctx, ch)
	<-ch // the (empty) snapshot

	var received atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	go func() {
		for batch := range ch {
			if received.Add(int64(len(batch.Events))) >= target {
				close(done)
				return
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	var ops []clientv3.Op
	for i := range b.N {
		k := lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)}
		raw, _ := json.Marshal(attrsFor(i))
		ops = append(ops, clientv3.OpPut(testPrefix+"/subnets/"+k.String(), string(raw)))
		if len(ops) == 100 || i == b.N-1 {
			if _, err := admin.Txn(ctx).Then(ops...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("received %d of %d events", received.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
