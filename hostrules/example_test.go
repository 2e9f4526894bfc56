package hostrules_test

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weftnet/weft/hostrules"
	"github.com/weftnet/weft/subnetenv"
)

// An agent that writes FLANNEL_IPMASQ=true keeps flannel's masquerade
// rules itself: applied before subnet.env, so that no pod starts without
// them, each time the lease or the network changes (in the agent's state
// callback), and repaired every minute.
func Example() {
	ctx := context.Background()
	rules := hostrules.New(hostrules.Options{Masquerade: true, Forward: true})
	go rules.Run(ctx, time.Minute)

	// The node's lease, as the agent reports it.
	network, subnet, mtu := netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.3.0/24"), 1450
	if err := rules.Apply(hostrules.Target{Network: network, Subnet: subnet}); err != nil {
		slog.Error("host rules", "err", err) // logged, and retried by Run
	}
	f := subnetenv.File{Network: network, Subnet: subnet, MTU: mtu, IPMasq: true}
	if err := subnetenv.Write(subnetenv.DefaultPath, f); err != nil {
		slog.Error("write subnet.env", "err", err)
	}
}
