//go:build linux

package probe

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestSharedPublicIPBounded: a writer publishes 100 leases of "one node"
// (admission lets a node's leases share a PublicIP) whose PublicIP is
// another host's, b's, and whose subnets are routed to it, so that every
// probe of them, over the overlay and the underlay, lands on b. Each round
// probes at most one peer of a public address: b gets at most one check's
// packets a round from this node (attempts small echoes, attempts underlay
// echoes, one TCP connection), not 2·Sample checks'.
func TestSharedPublicIPBounded(t *testing.T) {
	seg := netnstest.NewSegment(t, 2)
	a, b := seg.Hosts[0], seg.Hosts[1]
	run(t, "ip", "-n", a.Name, "route", "add", "10.250.0.0/16", "via", b.Addr.Addr().String())
	var targets []Target
	for i := range 100 {
		s := netip.MustParsePrefix(fmt.Sprintf("10.250.%d.0/24", i))
		targets = append(targets, Target{Subnet: s, Addr: s.Addr(), PublicIP: b.Addr.Addr(), Node: "victim", MTU: 1450, Overhead: 50})
	}
	var rounds atomic.Int64
	p, _ := runProber(t, Config{
		Namespace: a.Handle, Targets: func() []Target { return targets },
		Ready:  func() bool { rounds.Add(1); return true },
		Sample: 8, Interval: 100 * time.Millisecond, Timeout: 60 * time.Millisecond, UnderlayTCPPort: 9,
	})
	testutil.WaitFor(t, 10*time.Second, "ten rounds", func() bool { return rounds.Load() >= 10 })
	sent, _ := p.Sent()
	n := rounds.Load() // read after Sent: every send counted is of a round counted
	if max := n * attempts; sent[KindSmall] > max || sent[KindFull] > max*(1+searchSplits) || sent[KindUnderlay] > max || sent[KindTCP] > n {
		t.Errorf("after %d rounds: sent %v (small, full, underlay, tcp) to one public address; want at most %d small, %d underlay echoes and %d connections", n, sent, max, max, n)
	}
	if sent[KindUnderlay] == 0 || sent[KindTCP] != 0 {
		// b answers ICMP echoes: the underlay check ends there.
		t.Errorf("sent %v: want underlay echoes and no TCP connection", sent)
	}
	t.Logf("%d rounds: sent %v (small, full, underlay, tcp)", n, sent)
	if c := p.Counts(); c.UnderlayReachable == 0 {
		t.Errorf("Counts %+v: want peers found overlay-down", c)
	}
}
