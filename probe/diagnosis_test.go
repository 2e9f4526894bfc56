//go:build linux

package probe

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// flannelOverlay programs, with iproute2 alone, the VXLAN overlay
// flanneld programs: flannel.1 at 1450 on each host, the subnet's network
// address on it, and per peer a route, a permanent neighbour and an FDB
// entry. No weft runs at the peers: their kernels answer the probes, as a
// flanneld node's does. It returns each host's Target as seen by others.
func flannelOverlay(t *testing.T, hosts []*netnstest.Host) []Target {
	t.Helper()
	vtep := func(h *netnstest.Host) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(h.Index), 0}) }
	mac := func(h *netnstest.Host) string { return fmt.Sprintf("0e:00:00:00:00:%02x", h.Index) }
	var targets []Target
	for _, h := range hosts {
		ns := []string{"ip", "-n", h.Name}
		run(t, append(ns, "link", "add", "flannel.1", "address", mac(h), "mtu", "1450", "type", "vxlan", "id", "1",
			"local", h.Addr.Addr().String(), "dev", netnstest.Underlay, "dstport", "8472", "nolearning")...)
		run(t, append(ns, "addr", "add", vtep(h).String()+"/32", "dev", "flannel.1")...)
		run(t, append(ns, "link", "set", "flannel.1", "up")...)
		for _, peer := range hosts {
			if peer == h {
				continue
			}
			run(t, append(ns, "route", "add", vtep(peer).String()+"/24", "via", vtep(peer).String(), "dev", "flannel.1", "onlink")...)
			run(t, append(ns, "neigh", "add", vtep(peer).String(), "lladdr", mac(peer), "dev", "flannel.1", "nud", "permanent")...)
			run(t, "bridge", "-n", h.Name, "fdb", "append", mac(peer), "dev", "flannel.1", "dst", peer.Addr.Addr().String(), "self", "permanent")
		}
		targets = append(targets, Target{
			Subnet: netip.PrefixFrom(vtep(h), 24), Addr: vtep(h), PublicIP: h.Addr.Addr(), Node: h.Name,
			MTU: 1450, Overhead: 50, Encap: "UDP 8472",
		})
	}
	return targets
}

// nftDrop adds, in h's namespace, an input rule that drops what comes from
// src with IP protocol proto and, when port is set, that destination
// port (UDP), or when port is 0 and proto ICMP, echo requests. It returns
// what removes it.
func nftDrop(t *testing.T, h *netnstest.Host, src netip.Addr, proto byte, port uint16) func() {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(h.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("weft_test_drop_%d_%d", proto, port)
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
	chain := c.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	from := src.As4()
	exprs := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: from[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
	switch {
	case port != 0:
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)})
	case proto == unix.IPPROTO_ICMP:
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{8}}) // echo request
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables in %s: %v", h.Name, err)
	}
	return func() {
		c.DelTable(table)
		if err := c.Flush(); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
	}
}

// TestPathMTUSearch: over a flannel-programmed overlay, host c's switch
// port is lowered to 1300 bytes. The prober on a finds c behind a black
// hole at its next check and names the size (1250 to 1254 bytes of
// overlay: the bridge lets 4 bytes over a port's MTU through) within
// SearchRounds more checks of c, logged once with the fix, while c keeps
// answering small probes and b is never named. Raised again, c is
// reachable at its next check, logged once.
func TestPathMTUSearch(t *testing.T) {
	seg := netnstest.NewSegment(t, 3)
	a, c := seg.Hosts[0], seg.Hosts[2]
	targets := flannelOverlay(t, seg.Hosts)[1:]
	logs := &testutil.SyncBuffer{}
	var mu sync.Mutex
	var checksOfC []Result
	p, _ := runProber(t, Config{
		Namespace: a.Handle, Targets: func() []Target { return targets },
		Sample: 1, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		OnResult: func(tg Target, r Result) {
			if tg.Node == c.Name {
				mu.Lock()
				checksOfC = append(checksOfC, r)
				mu.Unlock()
			}
		},
	})
	state := func(tg Target) func() (Result, bool) {
		return func() (Result, bool) { return p.Result(tg.Subnet) }
	}
	b, cT := state(targets[0]), state(targets[1])
	testutil.WaitFor(t, 5*time.Second, "both checked at full size", func() bool {
		rb, okb := b()
		rc, okc := cT()
		return okb && okc && rb.State == StateReachable && rc.State == StateReachable && rb.PathMTU != nil && rb.PathMTU.OK && rc.PathMTU != nil && rc.PathMTU.OK
	})

	run(t, "ip", "-n", seg.Bridge.Name, "link", "set", fmt.Sprintf("p%d", c.Index), "mtu", "1300")
	mu.Lock()
	from := len(checksOfC)
	mu.Unlock()
	testutil.WaitFor(t, 10*time.Second, "c's black hole named", func() bool {
		r, _ := cT()
		return r.State == StateMTUBlackHole && r.PathMTU.Exact
	})
	r, _ := cT()
	if !r.Reachable || r.PathMTU.Carries < 1250 || r.PathMTU.Carries > 1254 || r.PathMTU.Need() != 1500 || r.PathMTU.Path() != r.PathMTU.Carries+50 {
		t.Errorf("c: %+v, path %+v; want reachable, carrying 1250 to 1254 of 1450", r, r.PathMTU)
	}
	want := fmt.Sprintf("carries %d bytes, the overlay needs 1500 (device MTU 1450 + 50 of encapsulation): lower Backend.MTU in net-conf.json to %d or less, or raise the underlay path's MTU to 1500", r.PathMTU.Path(), r.PathMTU.Carries)
	if !strings.Contains(r.Diagnosis, want) {
		t.Errorf("diagnosis %q, want %q", r.Diagnosis, want)
	}
	// The bound, in checks of c rather than time: one finds the hole
	// (the stale one may have been in flight), SearchRounds name its size.
	mu.Lock()
	var took int
	for i, cr := range checksOfC[from:] {
		if !cr.Reachable {
			t.Errorf("c's small probe lost at check %d: %+v", i, cr)
		}
		if cr.State == StateMTUBlackHole && cr.PathMTU.Exact {
			took = i + 1
			break
		}
	}
	mu.Unlock()
	if bound := 2 + SearchRounds(1450); took > bound {
		t.Errorf("named at c's %d-th check since the fault, want within %d", took, bound)
	}
	t.Logf("named at c's check %d since the fault (bound %d)", took, 2+SearchRounds(1450))
	if rb, _ := b(); rb.State != StateReachable || !rb.PathMTU.OK {
		t.Errorf("b, whose path is fine: %+v", rb)
	}
	if c := p.Counts(); c.MTUBlackHoles != 1 || c.Reachable != 2 {
		t.Errorf("Counts %+v", c)
	}

	run(t, "ip", "-n", seg.Bridge.Name, "link", "set", fmt.Sprintf("p%d", c.Index), "mtu", "1500")
	testutil.WaitFor(t, 10*time.Second, "c reachable at full size", func() bool {
		r, _ := cT()
		return r.State == StateReachable && r.PathMTU.OK
	})
	time.Sleep(500 * time.Millisecond) // more rounds: nothing more to log
	out := logs.String()
	if n := strings.Count(out, `msg="path MTU black hole"`); n != 1 {
		t.Errorf("%d black hole lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "carries full-size packets again"); n != 1 {
		t.Errorf("%d repair lines, want 1:\n%s", n, out)
	}
	if strings.Contains(out, targets[0].Node) {
		t.Errorf("b logged:\n%s", out)
	}
}

// TestUnderlayCheck: over a flannel-programmed overlay, each way a peer
// stops answering is told apart. b drops UDP 8472 from a: "underlay
// reachable, overlay not". b drops ICMP echo requests from a as well:
// "underlay unreachable" with ICMP alone, and reachable again by a TCP
// connection refused with UnderlayTCPPort set. A peer whose host is gone:
// "underlay unreachable". c, untouched, is never named.
func TestUnderlayCheck(t *testing.T) {
	seg := netnstest.NewSegment(t, 3)
	a, b := seg.Hosts[0], seg.Hosts[1]
	targets := flannelOverlay(t, seg.Hosts)[1:]
	ghost := Target{Subnet: netip.MustParsePrefix("10.244.77.0/24"), Addr: netip.MustParseAddr("10.244.77.0"), PublicIP: netip.MustParseAddr("172.30.0.77"), Node: "ghost", MTU: 1450, Overhead: 50, Encap: "UDP 8472"}
	run(t, "ip", "-n", a.Name, "route", "add", "10.244.77.0/24", "via", "172.30.0.77") // as if programmed, to no one
	all := append(targets, ghost)
	cfg := Config{Namespace: a.Handle, Targets: func() []Target { return all }, Sample: 3, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond}
	icmpOnly, _ := runProber(t, cfg)
	cfg.UnderlayTCPPort = 9 // discard: nothing listens, the kernel refuses
	withTCP, _ := runProber(t, cfg)

	waitState := func(p *Prober, tg Target, want State, what string) Result {
		t.Helper()
		testutil.WaitFor(t, 5*time.Second, what, func() bool { r, _ := p.Result(tg.Subnet); return r.State == want })
		r, _ := p.Result(tg.Subnet)
		return r
	}
	for _, p := range []*Prober{icmpOnly, withTCP} {
		waitState(p, targets[0], StateReachable, "b reachable")
		r := waitState(p, ghost, StateUnderlayDown, "the ghost's underlay unreachable")
		if !strings.HasPrefix(r.Diagnosis, "underlay unreachable: ") || r.Underlay == nil || r.Underlay.Reachable {
			t.Errorf("the ghost: %+v %+v", r, r.Underlay)
		}
	}

	undoUDP := nftDrop(t, b, a.Addr.Addr(), unix.IPPROTO_UDP, 8472)
	for _, p := range []*Prober{icmpOnly, withTCP} {
		r := waitState(p, targets[0], StateOverlayDown, "b's overlay down, its underlay up")
		want := "underlay reachable (icmp echo answered), overlay not: UDP 8472 dropped on the path or at the peer, or the peer's datapath"
		if r.Diagnosis != want || r.Reachable || !r.Underlay.Reachable {
			t.Errorf("b: %q, want %q", r.Diagnosis, want)
		}
	}
	undoICMP := nftDrop(t, b, a.Addr.Addr(), unix.IPPROTO_ICMP, 0)
	waitState(icmpOnly, targets[0], StateUnderlayDown, "b's underlay silent to ICMP alone")
	testutil.WaitFor(t, 5*time.Second, "b's underlay reached over TCP", func() bool {
		r, _ := withTCP.Result(targets[0].Subnet)
		return r.State == StateOverlayDown && strings.Contains(r.Diagnosis, "underlay reachable (tcp/9 refused answered)") && r.Underlay.By == "tcp/9 refused"
	})
	for _, p := range []*Prober{icmpOnly, withTCP} {
		if r, _ := p.Result(targets[1].Subnet); r.State != StateReachable {
			t.Errorf("c, untouched: %+v", r)
		}
		if sent, _ := p.Sent(); sent[KindUnderlay] == 0 {
			t.Errorf("no underlay echo counted: %v", sent)
		}
	}
	if sent, _ := withTCP.Sent(); sent[KindTCP] == 0 {
		t.Errorf("no TCP connection counted: %v", sent)
	}
	if sent, _ := icmpOnly.Sent(); sent[KindTCP] != 0 {
		t.Errorf("TCP connections without a port: %v", sent)
	}
	if c := withTCP.Counts(); c.UnderlayReachable != 1 || c.UnderlayUnreachable != 1 || c.Reachable != 1 {
		t.Errorf("Counts %+v, want b underlay-reachable, the ghost underlay-unreachable, c reachable", c)
	}
	undoICMP()
	undoUDP()
	for _, p := range []*Prober{icmpOnly, withTCP} {
		waitState(p, targets[0], StateReachable, "b reachable again")
	}
}
