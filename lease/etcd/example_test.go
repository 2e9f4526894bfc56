package etcd_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
)

// A node's lease: acquired once, then kept until the context ends. Keep
// returns an error matching lease.ErrLeaseLost if another node took the
// subnet; acquire again then. (agent.Network runs this loop for you.)
func ExampleNew() {
	m, err := etcd.New(etcd.Options{
		Endpoints: []string{"https://10.0.0.1:2379"},
		CAFile:    "/etc/etcd/ca.pem", CertFile: "/etc/etcd/node.pem", KeyFile: "/etc/etcd/node-key.pem",
		Node: "node-a", // stable across restarts: the hostname, a machine ID
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	l, err := m.Acquire(ctx, lease.AcquireRequest{Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr("10.0.0.5"), BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:05"}`),
	}})
	if err != nil {
		log.Fatal(err) // only ctx ending, or attributes the store refuses
	}
	fmt.Println("holding", l.Key)
	if err := m.Keep(ctx, l); err != nil && ctx.Err() == nil {
		log.Print(err)
	}
}

// A monitor with no lease of its own follows every node's lease.
func ExampleNewObserver() {
	o, err := etcd.NewObserver(etcd.Options{Endpoints: []string{"http://127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer o.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var view lease.View
	go view.Run(ctx, o)
	for ctx.Err() == nil {
		select {
		case <-view.Changed():
			fmt.Println(view.Len(), "leases")
		case <-ctx.Done():
		}
	}
}
