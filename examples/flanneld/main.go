// Command flanneld is a flannel-compatible node agent built on weft: the
// same flags, FLANNELD_* environment variables, etcd keys, subnet.env and
// VXLAN datapath as flannel's flanneld, so weft and flannel nodes can share
// one cluster.
//
// It runs in etcd mode, or with --kube-subnet-mgr on the Kubernetes API
// (the node's PodCIDR and flannel's node annotations; see package kube and
// examples/manifests). It writes subnet.env only once the
// datapath has converged on the node's lease, rewrites it when the lease or
// the network changes, removes it while the node holds no lease (at start
// until the lease is confirmed, and whenever it is lost, refused or left
// out by the network config: flannel's CNI plugin then fails an ADD rather
// than hand out another node's addresses), keeps flannel's host rules (--ip-masq, --iptables-forward-rules,
// --ip-blackhole-route: package hostrules) without needing any binary, serves /healthz
// and /readyz and Prometheus /metrics on --healthz-port, and on SIGTERM stops leaving the device, routes and lease in
// place so that a restart does not drop traffic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/weftnet/weft/hostrules"

	weftagent "github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/localstate"
	"github.com/weftnet/weft/probe"
	"github.com/weftnet/weft/subnetenv"
	"github.com/weftnet/weft/underlay"
	"github.com/weftnet/weft/vxlan"
)

// defaultGCPercent is the garbage collector's target unless GOGC is set.
const defaultGCPercent = 25

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Caught from the first moment: a SIGHUP must never kill the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	c, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flanneld:", err)
		os.Exit(2)
	}
	if c.version {
		fmt.Println("flanneld (weft)", version)
		return
	}
	stopProfiling := startProfiling()
	defer stopProfiling()
	if os.Getenv("GOGC") == "" {
		// An agent runs on every node, so its resident memory counts many
		// times over. Collecting at 25% heap growth instead of 100% costs
		// a little CPU while the peers are first programmed and keeps the
		// peak lower (BenchmarkDaemon, 20,000 peers: 64 MiB against 71 at
		// 50%; since then 52.3-52.7 at 25% against 57.1-59.2 at 50%, the
		// start unchanged within the noise). GOGC in the environment
		// overrides it.
		debug.SetGCPercent(defaultGCPercent)
	}
	memLimit, memLimitFile, haveMemLimit := int64(0), "", false
	if os.Getenv("GOMEMLIMIT") == "" {
		// The container's memory limit, if it has one, told to the
		// runtime: near it the collector works harder rather than let
		// the kernel kill the daemon (BenchmarkDaemon, 20,000 peers,
		// GOMEMLIMIT=40MiB: peak RSS 66-67 MiB, not 85-91).
		if memLimit, memLimitFile, haveMemLimit = cgroupMemoryLimit("/"); haveMemLimit {
			debug.SetMemoryLimit(int64(float64(memLimit) * memLimitShare))
		}
	}
	log, closeLog, err := c.log.open(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flanneld:", err)
		os.Exit(2)
	}
	defer closeLog()
	if haveMemLimit {
		log.Info("GOMEMLIMIT is not set: the Go runtime's memory limit is derived from the container's", "limit_bytes", int64(float64(memLimit)*memLimitShare), "container_limit_bytes", memLimit, "from", memLimitFile)
	}
	for _, name := range c.ignoredKlogFlags {
		log.Warn("klog flag accepted for compatibility, but it has no effect in weft", "flag", "-"+name)
	}
	for _, v := range c.ignoredKubeEnvVar {
		log.Info("flannel environment variable accepted; weft's Node informer does not need it", "env", v)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if c.releaseLease {
		if err := releaseLease(ctx, c, log); err != nil {
			log.Error("could not release the lease", "err", err)
			closeLog()
			os.Exit(1)
		}
		return
	}
	go ignoreHangups(ctx, log, hup)
	if err := run(ctx, c, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("flanneld stopped", "err", err)
		closeLog()
		os.Exit(1)
	}
	log.Info("flanneld stopped; device, routes and lease left in place")
}

// ignoreHangups logs each SIGHUP, which would otherwise kill the daemon
// without a word. flanneld has nothing to reload: the network config is
// followed live, and flags are read once, at start.
func ignoreHangups(ctx context.Context, log *slog.Logger, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP received and ignored: the network config is followed live, and a change of flags needs a restart")
		}
	}
}

func run(ctx context.Context, c config, log *slog.Logger) error {
	a := &agent{cfg: c, log: log, starting: "starting", rules: hostrules.New(hostrules.Options{
		Masquerade: c.ipMasq, NotFullyRandom: !c.masqRandomFully,
		Forward: c.forwardRules, Blackhole: c.blackholeRoute, Logger: log,
	})}
	a.status = newStatusView(a.ready)
	// The health server and the status socket come first, so that a node
	// waiting for the API server or its Node says so.
	if c.statusSocket != "" {
		defer serveStatusSocket(c.statusSocket, a.status, log)()
	}
	if c.healthzPort > 0 {
		srv, err := a.serveHealth(net.JoinHostPort(c.healthzIP.String(), fmt.Sprint(c.healthzPort)))
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if removed, err := subnetenv.RemoveStale(c.subnetFile); err != nil {
		log.Warn("could not remove temporary files a killed write of subnet.env left", "err", err)
	} else if len(removed) > 0 {
		log.Info("removed temporary files a killed write of subnet.env left", "files", removed)
	}
	var err error
	if c.kubeSubnetMgr {
		a.src, err = newKubeSource(ctx, c, log, func(why string) { a.update(func() { a.starting = why }) })
	} else {
		if c.node == "" {
			c.node, err = os.Hostname()
			if err != nil {
				return fmt.Errorf("no --node-name or NODE_NAME, and no hostname: %w", err)
			}
		}
		a.src, err = newEtcdSource(c, log)
	}
	if err != nil {
		return err
	}
	defer a.src.close()
	c.node = a.src.manager.Node()
	if a.reg != nil {
		a.src.metrics(a.reg)
	}
	// The flags win, then the Node's public-ip annotations (kube mode,
	// the Manager's hints), as in flannel; a family still without one is
	// looked for on the interface, by the Network, each time it sets up,
	// so that an address that comes up after the daemon (SLAAC, a late
	// DHCP lease), or a default route that appears, is found without a
	// restart.
	nc := weftagent.NetworkConfig{
		Manager: a.src.manager, Previous: a.src.previous,
		PublicIP: c.publicIP, PublicIPv6: c.publicIPv6,
		ResyncInterval: c.resync, Logger: log,
		Datapaths: map[string]lease.DatapathFactory{
			lease.DefaultBackendType: vxlan.NewFactory(vxlan.FactoryConfig{TXChecksumOffload: c.txChecksumOffload}),
		},
	}
	var lastFound underlay.Choice
	onInterface := c // the interface's own addresses, the flags aside
	onInterface.publicIP, onInterface.publicIPv6 = netip.Addr{}, netip.Addr{}
	nc.FindPublic = func(ipv4, ipv6 bool) (netip.Addr, netip.Addr, error) {
		found, err := findPublicAddrs(onInterface, ipv4, ipv6)
		if err != nil {
			return netip.Addr{}, netip.Addr{}, err
		}
		if found != lastFound {
			log.Info("chose the underlay", "interface", found.Interface, "by", found.By, "public_ip", found.IPv4, "public_ipv6", found.IPv6)
			lastFound = found
		}
		return found.IPv4, found.IPv6, nil
	}
	// A peer lease over the control plane's address would cut the node
	// off from the very store it must watch to see the lease go.
	lookupCtx, cancelLookup := context.WithTimeout(ctx, 10*time.Second)
	nc.Protected, err = admit.EndpointPrefixes(lookupCtx, a.src.endpoints, net.DefaultResolver.LookupNetIP)
	cancelLookup()
	if err != nil {
		log.Warn("cannot resolve a control-plane endpoint; peer leases are kept off the others' addresses only", "err", err)
	}
	if c.stateDir != "" {
		nc.LocalState = localstate.NewStore(c.stateDir, stateIdentity(c), c.stateMaxAge)
		nc.OfflineAfter = c.offlineAfter
	}
	nc.OnState = func(st weftagent.State) {
		a.update(func() { a.held, a.netConf, a.mtu, a.withdrawn = st.Lease, st.Config, st.MTU, weftagent.Withdrawal{} })
	}
	// The lease given up (or not yet confirmed, at start): subnet.env
	// goes, so that no pod gets an address of a subnet another node may
	// hold, until the next State.
	nc.OnWithdraw = func(w weftagent.Withdrawal) {
		a.update(func() { a.held, a.withdrawn = lease.Lease{}, w })
	}
	n, err := weftagent.NewNetwork(nc)
	if err != nil {
		return err
	}
	var prober *probe.Prober
	if c.probeInterval > 0 {
		prober, err = probe.New(probe.Config{
			Targets: probe.NetworkTargets(n), Ready: func() bool { ok, _ := n.Ready(); return ok },
			Sample: c.probeSample, Interval: c.probeInterval, Timeout: c.probeTimeout,
			UnderlayTCPPort: c.probeUnderlayTCPPort, Logger: log, OnResult: a.observeProbe,
		})
		if err != nil {
			return err
		}
		go runProber(ctx, prober, log)
	}
	a.mu.Lock()
	a.net, a.prober = n, prober
	a.mu.Unlock()
	a.status.set(n, prober)
	mode := "etcd " + c.etcdEndpoints
	if c.kubeSubnetMgr {
		mode = "kube"
	}
	log.Info("flanneld starting", "version", version, "node", c.node, "public_ip", nc.PublicIP, "public_ipv6", nc.PublicIPv6, "mode", mode)
	go a.resync(ctx)
	return n.Run(ctx)
}
