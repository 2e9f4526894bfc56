package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/linkstate"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/vxlan"
)

const netConf = `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`

// host is one simulated machine running the agent loop.
type host struct {
	*netnstest.Host
	net  *agent.Network
	pods []*pod
}

// pod is a namespace on its host's cni0 bridge.
type pod struct {
	ns   *netnstest.Namespace
	name string
	addr netip.Addr
}

// exchange is one pod pair's traffic: the echoes until the first that
// came back.
type exchange struct {
	from, to         *pod
	fromHost, toHost *host
	netnstest.Exchanges
	err error
	// diag is, with options.diagnose, the neighbours, routes and IP
	// counters of the four namespaces on the path, read just after an
	// exchange whose first datagram got no echo.
	diag string
}

// report is what a run found.
type report struct {
	converged time.Duration
	exchanges []exchange
}

// slowestFirst returns the exchange whose first attempt took longest: a
// first attempt that got no echo counts as its whole wait
// (firstExchangeTimeout).
func (r report) slowestFirst() (exchange, bool) {
	var worst exchange
	found := false
	for _, x := range r.exchanges {
		if !found || x.First > worst.First {
			worst, found = x, true
		}
	}
	return worst, found
}

// retried returns the exchanges whose first datagram got no echo.
func (r report) retried() []exchange {
	var out []exchange
	for _, x := range r.exchanges {
		if x.Attempts > 1 || x.err != nil {
			out = append(out, x)
		}
	}
	return out
}

// firstExchangeTimeout is how long the first datagram of a pair waits for
// its echo. On a converged overlay it comes back in well under a
// millisecond, and on a machine so loaded that it does not, within this:
// a datagram still without an echo was dropped, and the retries after it
// show how long the path took to carry traffic. (Under heavy load a first
// echo has been seen to take just over a second: a neighbour resolution
// retried, the datagram carried.)
const firstExchangeTimeout = 3 * time.Second

func run(ctx context.Context, e *env, o options) (report, error) {
	var rep report
	if o.hosts < 2 || o.hosts > 200 || o.pods < 1 || o.pods > 20 {
		return rep, errors.New("--hosts must be 2 to 200 and --pods 1 to 20")
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	start := time.Now()
	var srv *etcdtest.Server
	var seg *netnstest.Segment
	if err := e.harness(func() {
		srv = etcdtest.Start(e)
		seg = netnstest.NewSegment(e, o.hosts)
	}); err != nil {
		return rep, err
	}
	admin := srv.Client(e)
	if _, err := admin.Put(ctx, etcd.DefaultPrefix+"/config", netConf); err != nil {
		return rep, fmt.Errorf("write the network config: %w", err)
	}
	fmt.Fprintf(o.out, "weft sandbox: %d hosts, etcd at %s, network config %s\n", o.hosts, srv.Endpoint(), netConf)

	// The agents.
	agentCtx, stopAgents := context.WithCancel(ctx)
	e.Cleanup(stopAgents)
	hosts := make([]*host, len(seg.Hosts))
	for i, h := range seg.Hosts {
		m, err := etcd.New(etcd.Options{Endpoints: []string{srv.Endpoint()}, Node: h.Name, Logger: o.log.With("host", h.Name)})
		if err != nil {
			return rep, err
		}
		e.Cleanup(func() { m.Close() })
		n, err := agent.NewNetwork(agent.NetworkConfig{
			Manager: m, PublicIP: h.Addr.Addr(), Namespace: h.Handle,
			Logger:    o.log.With("host", h.Name),
			Datapaths: map[string]lease.DatapathFactory{lease.DefaultBackendType: vxlan.NewFactory(vxlan.FactoryConfig{})},
		})
		if err != nil {
			return rep, err
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := n.Run(agentCtx); err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "sandbox: agent on %s: %v\n", h.Name, err)
			}
		}()
		e.Cleanup(func() { stopAgents(); <-done })
		hosts[i] = &host{Host: h, net: n}
	}
	if err := waitConverged(ctx, hosts, o.timeout); err != nil {
		return rep, err
	}

	// Pods, on a bridge addressed from each host's subnet. Converged
	// includes the bridges and veths carrying traffic: the kernel brings
	// a new bridge's carrier and queue up in its link-watch work, up to a
	// second later, and a first packet sent before then is dropped.
	for _, h := range hosts {
		if err := e.harness(func() { addPods(e, h, o.pods) }); err != nil {
			return rep, err
		}
	}
	if err := waitLinksUp(ctx, hosts, o.timeout); err != nil {
		return rep, err
	}
	converged := time.Since(start)
	rep.converged = converged

	// Real packets from every pod to every pod on another host.
	failures := 0
	for _, a := range hosts {
		for _, b := range hosts {
			if a == b {
				continue
			}
			for _, pa := range a.pods {
				for _, pb := range b.pods {
					x := exchange{from: pa, to: pb, fromHost: a, toHost: b}
					err := e.harness(func() {
						echo := pb.ns.ListenEcho(e, pb.addr)
						x.Exchanges, x.err = pa.ns.CountExchanges(pa.addr, echo.Addr, firstExchangeTimeout, 5*time.Second)
					})
					if o.diagnose && (x.Attempts > 1 || x.err != nil) {
						x.diag = pathState(a.Name, pa.ns.Name, b.Name, pb.ns.Name)
					}
					if err != nil {
						return rep, err
					}
					if x.err != nil {
						failures++
					}
					rep.exchanges = append(rep.exchanges, x)
				}
			}
		}
	}

	fmt.Fprintln(o.out)
	tw := tabwriter.NewWriter(o.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tUNDERLAY\tSUBNET\tVTEP MAC\tPEERS\tDEVICE MTU")
	for _, h := range hosts {
		l, _ := h.net.Lease()
		v4, _ := vxlan.DatapathsOf(h.net.Datapaths())
		st := v4.Status()
		programmed := 0
		for _, p := range st.Reconciler.Peers {
			if p.Programmed {
				programmed++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", h.Name, h.Addr.Addr(), l.Key.IPv4, st.Device.MAC, programmed, st.Device.MTU)
	}
	tw.Flush()
	fmt.Fprintln(o.out)
	tw = tabwriter.NewWriter(o.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM POD\tTO POD\tRESULT")
	for _, x := range rep.exchanges {
		res := fmt.Sprintf("ok, UDP echo in %s", x.Took.Round(10*time.Microsecond))
		switch {
		case x.err != nil:
			res = "FAILED: " + x.err.Error()
		case x.Attempts > 1:
			res += fmt.Sprintf(" (%d attempts; the first: %v)", x.Attempts, x.FirstErr)
		}
		fmt.Fprintf(tw, "%s %s\t%s %s\t%s\n", x.from.name, x.from.addr, x.to.name, x.to.addr, res)
	}
	tw.Flush()
	fmt.Fprintf(o.out, "\nconverged in %s; %d of %d pod pairs reached each other over VXLAN; total %s\n",
		converged.Round(time.Millisecond), len(rep.exchanges)-failures, len(rep.exchanges), time.Since(start).Round(time.Millisecond))
	if worst, ok := rep.slowestFirst(); ok {
		fmt.Fprintf(o.out, "slowest first exchange: %s to %s, %s", worst.from.name, worst.to.name, worst.First.Round(10*time.Microsecond))
		if n := len(rep.retried()); n > 0 {
			fmt.Fprintf(o.out, "; %d of %d pod pairs got no echo to their first datagram within %s after convergence", n, len(rep.exchanges), firstExchangeTimeout)
		}
		fmt.Fprintln(o.out)
	}
	if failures > 0 {
		return rep, fmt.Errorf("%d of %d pod pairs could not reach each other", failures, len(rep.exchanges))
	}

	if o.keep {
		fmt.Fprintf(o.out, "\nleft up for inspection; press Ctrl-C to tear down. For example:\n")
		h := hosts[0]
		fmt.Fprintf(o.out, "  ip -n %s route show proto 157\n  ip -n %s neigh show dev flannel.1\n  bridge -n %s fdb show dev flannel.1\n  ip -n %s nexthop\n", h.Name, h.Name, h.Name, h.Name)
		fmt.Fprintf(o.out, "  etcdctl --endpoints %s get --prefix /coreos.com/network\n", srv.Endpoint())
		<-ctx.Done()
	}
	return rep, nil
}

// pathState is what the kernel holds along a path: each namespace's
// neighbours and routes, and the IP counters (drops among them).
func pathState(namespaces ...string) string {
	var b strings.Builder
	for _, ns := range namespaces {
		for _, args := range [][]string{{"-n", ns, "neigh", "show"}, {"-n", ns, "route", "show"}, {"netns", "exec", ns, "nstat", "-as"}} {
			out, err := exec.Command("ip", args...).CombinedOutput()
			fmt.Fprintf(&b, "--- ip %s (%v)\n%s", strings.Join(args, " "), err, out)
		}
	}
	return b.String()
}

// waitConverged waits until every host is ready and has programmed
// every other host's subnet: what the pods' traffic needs. A host's
// readiness alone is not it: it means the host programmed the peers it
// knew of, and hosts that start together each learn of the others' leases
// over the watch, moments after their own first listing.
func waitConverged(ctx context.Context, hosts []*host, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, h := range hosts {
		for {
			ok, why := h.net.Ready()
			if ok {
				ok, why = programsAll(h, hosts)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s has not converged after %s: %s", h.Name, timeout, why)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// programsAll reports whether h's datapath holds every other host's
// subnet, every object of it in the kernel; if not, which it lacks.
func programsAll(h *host, hosts []*host) (bool, string) {
	v4, _ := vxlan.DatapathsOf(h.net.Datapaths())
	if v4 == nil {
		return false, "no IPv4 datapath"
	}
	programmed := map[netip.Prefix]bool{}
	for _, p := range v4.Status().Reconciler.Peers {
		programmed[p.Desired.Subnet] = p.Wanted && p.Programmed
	}
	for _, o := range hosts {
		if o == h {
			continue
		}
		l, ok := o.net.Lease()
		if !ok {
			return false, o.Name + " holds no lease yet"
		}
		if !programmed[l.Key.IPv4] {
			return false, fmt.Sprintf("the route to %s's subnet %s is not programmed yet", o.Name, l.Key.IPv4)
		}
	}
	return true, ""
}

// waitLinksUp waits until every bridge and veth the sandbox made, on
// the hosts and in the pods, is operationally up (see package
// internal/linkstate).
func waitLinksUp(ctx context.Context, hosts []*host, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, h := range hosts {
		names := []string{"cni0"}
		for i := range h.pods {
			names = append(names, vethName(i))
		}
		if err := linkstate.Wait(ctx, h.Netlink(), names...); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		for _, p := range h.pods {
			if err := linkstate.Wait(ctx, p.ns.Netlink(), "eth0"); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
	}
	return nil
}

// vethName is the host's end of its i-th pod's veth.
func vethName(i int) string { return fmt.Sprintf("veth%d", i) }

// addPods gives h a cni0 bridge holding its subnet's first address, turns
// on forwarding, and adds n pod namespaces on the bridge, each with the
// next address and a default route via the bridge.
func addPods(e *env, h *host, n int) {
	l, _ := h.net.Lease()
	subnet := l.Key.IPv4
	nl := h.Netlink()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}}
	if err := nl.LinkAdd(br); err != nil {
		e.Fatalf("%s: cni0: %v", h.Name, err)
	}
	gw := subnet.Addr().Next()
	h.AddrAdd(e, "cni0", netip.PrefixFrom(gw, subnet.Bits()))
	if err := nl.LinkSetUp(br); err != nil {
		e.Fatalf("%s: cni0 up: %v", h.Name, err)
	}
	if err := h.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		e.Fatalf("%s: enable forwarding: %v", h.Name, err)
	}
	addr := gw
	for i := range n {
		addr = addr.Next()
		p := &pod{ns: netnstest.NewNamespace(e, "weft-pod"), name: fmt.Sprintf("h%d/pod%d", h.Index, i+1), addr: addr}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: vethName(i), MasterIndex: br.Index},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(p.ns.Handle),
		}
		if err := nl.LinkAdd(veth); err != nil {
			e.Fatalf("%s: pod veth: %v", h.Name, err)
		}
		if err := nl.LinkSetUp(veth); err != nil {
			e.Fatalf("%s: %v", h.Name, err)
		}
		pnl := p.ns.Netlink()
		eth, err := pnl.LinkByName("eth0")
		if err != nil {
			e.Fatalf("%s: %v", p.name, err)
		}
		if err := pnl.LinkSetUp(eth); err != nil {
			e.Fatalf("%s: %v", p.name, err)
		}
		p.ns.AddrAdd(e, "eth0", netip.PrefixFrom(addr, subnet.Bits()))
		if err := pnl.RouteAdd(&netlink.Route{Gw: gw.AsSlice(), LinkIndex: eth.Attrs().Index}); err != nil {
			e.Fatalf("%s: default route: %v", p.name, err)
		}
		h.pods = append(h.pods, p)
	}
}
