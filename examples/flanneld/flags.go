package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	weftagent "github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/localstate"
	"github.com/weftnet/weft/probe"
	"github.com/weftnet/weft/status"
	"github.com/weftnet/weft/vxlan"
)

// config is flanneld's command line: every flag of flannel's flanneld,
// with flannel's names, defaults and meanings, and a few of weft's own.
// Each flag can also be given as an environment variable: FLANNELD_ and
// the flag name in upper case with dashes as underscores
// (--etcd-endpoints is FLANNELD_ETCD_ENDPOINTS). A flag on the command
// line wins over the environment; a flag that may be repeated takes one
// value from the environment.
type config struct {
	// etcd mode
	etcdEndpoints string
	etcdPrefix    string
	etcdKeyfile   string
	etcdCertfile  string
	etcdCAFile    string
	etcdUsername  string
	etcdPassword  string

	// kube mode
	kubeSubnetMgr        bool
	kubeAPIURL           string
	kubeconfig           string
	kubeAnnotationPrefix string
	netConfPath          string
	setNodeUnavailable   bool
	// kubeAssignPodCIDRs: a weft extension; see kube.Options.AssignPodCIDRs.
	kubeAssignPodCIDRs bool

	// the node's addresses
	ifaces        []string // names or addresses, tried in order
	ifaceRegexes  []*regexp.Regexp
	ifaceCanReach netip.Addr
	publicIP      netip.Addr
	publicIPv6    netip.Addr

	// what the node writes and keeps
	subnetFile      string
	ipMasq          bool
	masqRandomFully bool // flannel's default; --ip-masq-fully-random-disable clears it
	forwardRules    bool
	rulesResync     time.Duration
	blackholeRoute  bool
	renewMargin     int // minutes, as flannel
	leaseTTL        time.Duration
	node            string
	resync          time.Duration
	// txChecksumOffload overrides Backend.TXChecksumOffload ("": follow
	// it); a weft extension.
	txChecksumOffload vxlan.ChecksumOffload
	// the local state an offline boot runs from (weft extensions)
	stateDir     string
	stateMaxAge  time.Duration
	offlineAfter time.Duration

	// the status view and probing (weft extensions)
	statusSocket          string
	probeInterval         time.Duration
	probeSample           int
	probeTimeout          time.Duration
	probeAffectsReadiness bool
	probeUnderlayTCPPort  int

	healthzIP         netip.Addr
	healthzPort       int
	version           bool
	releaseLease      bool
	log               logConfig
	ignoredKlogFlags  []string // set, but meaningless here; warned about at start
	ignoredKubeEnvVar []string
}

// flagGroup orders --help.
type flagGroup struct {
	title string
	names []string
}

var flagGroups = []flagGroup{
	{"etcd mode (the default)", []string{"etcd-endpoints", "etcd-prefix", "etcd-keyfile", "etcd-certfile", "etcd-cafile", "etcd-username", "etcd-password"}},
	{"Kubernetes mode", []string{"kube-subnet-mgr", "kube-api-url", "kubeconfig-file", "kube-annotation-prefix", "net-config-path", "set-node-network-unavailable", "kube-assign-pod-cidrs"}},
	{"the node's addresses", []string{"iface", "iface-regex", "iface-can-reach", "public-ip", "public-ipv6", "node-name"}},
	{"what the node writes and keeps", []string{"subnet-file", "ip-masq", "ip-masq-fully-random-disable", "iptables-forward-rules", "iptables-resync", "ip-blackhole-route", "subnet-lease-renew-margin", "subnet-lease-ttl", "resync-interval", "vxlan-tx-checksum-offload"}},
	{"local state, for a boot with the control plane unreachable (weft extensions)", []string{"state-dir", "state-max-age", "offline-after"}},
	{"health and metrics", []string{"healthz-ip", "healthz-port"}},
	{"status and probing (weft extensions)", []string{"status-socket", "probe-interval", "probe-sample", "probe-timeout", "probe-underlay-tcp-port", "probe-affects-readiness"}},
	{"logging (klog's flags, as flannel accepts them)", []string{"v", "vmodule", "logtostderr", "alsologtostderr", "log_dir", "log_file", "stderrthreshold", "log_file_max_size", "log_backtrace_at", "add_dir_header", "skip_headers", "skip_log_headers", "one_output"}},
	{"other", []string{"version", "release-lease"}},
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error {
	*r = append(*r, v)
	return nil
}

func parseFlags(args []string, env func(string) string, stderr io.Writer) (config, error) {
	var (
		c                                         config
		ifaces, ifaceRegexes                      repeated
		ifaceCanReach, publicIP, publicIPv6, hzIP string
		txChecksumOffload                         string
		masqRandomFullyDisable                    bool
		rulesResync                               int
		klogIgnoredString                         = map[string]*string{}
		klogIgnoredBool                           = map[string]*bool{}
		klogV                                     int
		klogVModule, klogLogDir, klogLogFile      string
		klogToStderr, klogAlsoToStderr            bool
		klogStderrThreshold                       string
		klogMaxSize                               uint64
	)
	fs := flag.NewFlagSet("flanneld", flag.ContinueOnError)
	fs.SetOutput(stderr)

	fs.StringVar(&c.etcdEndpoints, "etcd-endpoints", "http://127.0.0.1:4001,http://127.0.0.1:2379", "a comma-delimited list of etcd endpoints")
	fs.StringVar(&c.etcdPrefix, "etcd-prefix", "/coreos.com/network", "etcd prefix")
	fs.StringVar(&c.etcdKeyfile, "etcd-keyfile", "", "SSL key file used to secure etcd communication")
	fs.StringVar(&c.etcdCertfile, "etcd-certfile", "", "SSL certification file used to secure etcd communication")
	fs.StringVar(&c.etcdCAFile, "etcd-cafile", "", "SSL Certificate Authority file used to secure etcd communication")
	fs.StringVar(&c.etcdUsername, "etcd-username", "", "username for BasicAuth to etcd")
	fs.StringVar(&c.etcdPassword, "etcd-password", "", "password for BasicAuth to etcd")

	fs.BoolVar(&c.kubeSubnetMgr, "kube-subnet-mgr", false, "contact the Kubernetes API for subnet assignment instead of etcd")
	fs.StringVar(&c.kubeAPIURL, "kube-api-url", "", "Kubernetes API server URL; not needed in a pod")
	fs.StringVar(&c.kubeconfig, "kubeconfig-file", "", "kubeconfig file location; not needed in a pod")
	fs.StringVar(&c.kubeAnnotationPrefix, "kube-annotation-prefix", "flannel.alpha.coreos.com", `prefix of the node annotations: without a "/", names follow it after one; ending in "/" or "-", right after it; else after a "-"`)
	fs.StringVar(&c.netConfPath, "net-config-path", "/etc/kube-flannel/net-conf.json", "path to the network configuration file")
	fs.BoolVar(&c.setNodeUnavailable, "set-node-network-unavailable", true, "clear the Node's NetworkUnavailable condition once the node routes its subnet")
	fs.BoolVar(&c.kubeAssignPodCIDRs, "kube-assign-pod-cidrs", false, "give this node a free PodCIDR when it has none, for clusters whose kube-controller-manager does not allocate them (a weft extension; needs RBAC patch on nodes)")

	fs.Var(&ifaces, "iface", "interface to use for inter-host communication, by name or address; may be repeated, the first that exists wins (default: the one with the default route)")
	fs.Var(&ifaceRegexes, "iface-regex", "regular expression matched against interface names and addresses; may be repeated, tried in order after every --iface")
	fs.StringVar(&ifaceCanReach, "iface-can-reach", "", "use the interface and source address the kernel routes this IP address through (as 'ip route get')")
	fs.StringVar(&publicIP, "public-ip", "", "IPv4 address other nodes reach this one at (default: the interface's)")
	fs.StringVar(&publicIPv6, "public-ipv6", "", "IPv6 address other nodes reach this one at (default: the interface's global one, when IPv6 is enabled)")
	fs.StringVar(&c.node, "node-name", "", "stable identity of this node, the lease owner and VTEP MAC seed (default: NODE_NAME, then in kube mode the Pod's spec.nodeName from POD_NAME and POD_NAMESPACE, then the hostname); unique per host: a cloned VM must change its hostname or set this (a weft extension)")

	fs.StringVar(&c.subnetFile, "subnet-file", "/run/flannel/subnet.env", "filename where env variables (subnet, MTU, ...) will be written to")
	fs.BoolVar(&c.ipMasq, "ip-masq", false, "set up IP masquerade rules for traffic destined outside of the overlay network")
	fs.BoolVar(&masqRandomFullyDisable, "ip-masq-fully-random-disable", false, "masquerade without fully random source ports")
	fs.BoolVar(&c.forwardRules, "iptables-forward-rules", true, "accept the overlay's traffic in the FORWARD chain, even where its policy is DROP")
	fs.IntVar(&rulesResync, "iptables-resync", 5, "period of the check that the masquerade and forward rules are intact, in seconds")
	fs.BoolVar(&c.blackholeRoute, "ip-blackhole-route", false, "add a blackhole route for the node's own subnet, so that traffic to its unused addresses is dropped here")
	fs.IntVar(&c.renewMargin, "subnet-lease-renew-margin", 60, "subnet lease renewal margin, in minutes, from 1 to 1439")
	fs.DurationVar(&c.leaseTTL, "subnet-lease-ttl", 24*time.Hour, "life of a subnet lease that is not renewed, at least 2s (a weft extension; flannel fixes it at 24h)")
	fs.DurationVar(&c.resync, "resync-interval", 30*time.Second, "period of the datapath's unprompted reconcile (a weft extension)")
	fs.StringVar(&txChecksumOffload, "vxlan-tx-checksum-offload", "", `TX checksum offload of the VXLAN devices: auto (off on kernels before 5.7, which corrupt the checksum of VXLAN packets NATed twice; on otherwise), on or off; "" follows net-conf.json's Backend.TXChecksumOffload, whose default is auto (a weft extension)`)

	fs.StringVar(&c.stateDir, "state-dir", localstate.DefaultDir, `directory of the local state (the network config, this node's lease and VTEP MACs, the last admitted peers) the node boots from when the control plane does not answer; "" keeps none`)
	fs.DurationVar(&c.stateMaxAge, "state-max-age", localstate.DefaultMaxAge, "oldest local state the node boots from")
	fs.DurationVar(&c.offlineAfter, "offline-after", weftagent.DefaultOfflineAfter, "how long to wait at start for the control plane before booting from the local state")

	fs.StringVar(&hzIP, "healthz-ip", "0.0.0.0", "the IP address for the healthz, readyz and metrics server to listen on")
	fs.IntVar(&c.healthzPort, "healthz-port", 0, "the port for the healthz, readyz and metrics server; 0 disables it")

	fs.StringVar(&c.statusSocket, "status-socket", status.DefaultSocket, `unix socket (mode 0600) serving /status and on-demand probes to weftctl; "" serves none (the health server serves them too)`)
	fs.DurationVar(&c.probeInterval, "probe-interval", probe.DefaultInterval, "time between rounds of node-to-node probing over the overlay; 0 turns probing off")
	fs.IntVar(&c.probeSample, "probe-sample", probe.DefaultSample, "peers probed per round (besides re-probing the unreachable ones): every peer is probed within ceil(peers/sample) rounds")
	fs.DurationVar(&c.probeTimeout, "probe-timeout", probe.DefaultTimeout, "how long a probe waits for a reply")
	fs.BoolVar(&c.probeAffectsReadiness, "probe-affects-readiness", false, "report not ready while no peer probed answers full-size packets over the overlay (every one unreachable or behind a path MTU black hole: the node's own overlay or underlay is cut); off, probing never affects readiness")
	fs.IntVar(&c.probeUnderlayTCPPort, "probe-underlay-tcp-port", 0, "when a peer answers neither over the overlay nor to an ICMP echo to its public address (a firewall dropping ICMP), open a TCP connection to this port there (kubelet's 10250, sshd's 22): accepted or refused, the underlay reaches the peer; the connection is reset at once; 0 checks with ICMP only")

	fs.IntVar(&klogV, "v", 0, "log verbosity: 0 logs INFO and above, 1 or more DEBUG too")
	fs.StringVar(&klogVModule, "vmodule", "", "accepted for klog compatibility; weft has no per-file verbosity, and -v applies everywhere")
	fs.BoolVar(&klogToStderr, "logtostderr", true, "log to standard error; false writes to --log_file, or to flanneld.log in --log_dir")
	fs.BoolVar(&klogAlsoToStderr, "alsologtostderr", false, "with --logtostderr=false, log to standard error too")
	fs.StringVar(&klogLogDir, "log_dir", "", "with --logtostderr=false, write flanneld.log in this directory")
	fs.StringVar(&klogLogFile, "log_file", "", "with --logtostderr=false, write the log to this file")
	fs.StringVar(&klogStderrThreshold, "stderrthreshold", "", "with --logtostderr=false, also write records at this severity and above (INFO, WARNING, ERROR) to standard error")
	fs.Uint64Var(&klogMaxSize, "log_file_max_size", 1800, "accepted for klog compatibility; the log file is not rotated (use logrotate's copytruncate)")
	for _, name := range []string{"log_backtrace_at"} {
		klogIgnoredString[name] = fs.String(name, "", "accepted for klog compatibility; no effect")
	}
	for _, name := range []string{"add_dir_header", "skip_headers", "skip_log_headers", "one_output"} {
		klogIgnoredBool[name] = fs.Bool(name, false, "accepted for klog compatibility; no effect")
	}
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.BoolVar(&c.releaseLease, "release-lease", false, "release this node's lease and exit, for a node being decommissioned: its subnet is free at once, not after --subnet-lease-ttl. Stop the daemon first. etcd mode only (a weft extension)")
	fs.Usage = func() { usage(fs) }

	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := envName(f.Name)
		if v := env(name); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment variable %s=%q: %v", name, v, e)
			}
			set[f.Name] = true
		}
	})
	if err != nil {
		return config{}, err
	}
	// flannel reads these from its environment in kube mode and offers
	// no flag for them; weft's informer needs neither.
	for _, name := range []string{"EVENT_QUEUE_DEPTH", "CONT_WHEN_CACHE_NOT_READY"} {
		if v := env(name); v != "" {
			c.ignoredKubeEnvVar = append(c.ignoredKubeEnvVar, name+"="+v)
		}
	}

	c.ifaces = ifaces
	for _, re := range ifaceRegexes {
		r, err := regexp.Compile(re)
		if err != nil {
			return config{}, fmt.Errorf("--iface-regex %q: %v", re, err)
		}
		c.ifaceRegexes = append(c.ifaceRegexes, r)
	}
	if ifaceCanReach != "" {
		if c.ifaceCanReach, err = netip.ParseAddr(ifaceCanReach); err != nil {
			return config{}, fmt.Errorf("--iface-can-reach %q is not an IP address", ifaceCanReach)
		}
	}
	if c.publicIP, err = parseAddr("--public-ip", publicIP, false); err != nil {
		return config{}, err
	}
	if c.publicIPv6, err = parseAddr("--public-ipv6", publicIPv6, true); err != nil {
		return config{}, err
	}
	if c.healthzIP, err = netip.ParseAddr(hzIP); err != nil {
		return config{}, fmt.Errorf("--healthz-ip %q is not an IP address", hzIP)
	}
	c.masqRandomFully = !masqRandomFullyDisable
	if txChecksumOffload != "" {
		if c.txChecksumOffload, err = vxlan.ParseChecksumOffload(txChecksumOffload); err != nil {
			return config{}, fmt.Errorf("--vxlan-tx-checksum-offload %q: want auto, on or off", txChecksumOffload)
		}
	}
	switch {
	case c.healthzPort < 0 || c.healthzPort > 65535:
		return config{}, fmt.Errorf("--healthz-port %d: want 0 (off) to 65535", c.healthzPort)
	case c.renewMargin < 1 || c.renewMargin > 1439:
		return config{}, fmt.Errorf("--subnet-lease-renew-margin %d: want 1 to 1439 minutes", c.renewMargin)
	case c.leaseTTL < 2*time.Second:
		return config{}, fmt.Errorf("--subnet-lease-ttl %v: want at least 2s", c.leaseTTL)
	case c.stateMaxAge <= 0:
		return config{}, fmt.Errorf("--state-max-age %v: want a positive duration, such as 168h", c.stateMaxAge)
	case c.offlineAfter <= 0:
		return config{}, fmt.Errorf("--offline-after %v: want a positive duration, such as 5s", c.offlineAfter)
	case c.probeInterval < 0:
		return config{}, fmt.Errorf("--probe-interval %v: want 0 (off) or a positive duration, such as 10s", c.probeInterval)
	case c.probeInterval > 0 && (c.probeSample < 1 || c.probeSample > probe.MaxSample):
		return config{}, fmt.Errorf("--probe-sample %d: want 1 to %d", c.probeSample, probe.MaxSample)
	case c.probeUnderlayTCPPort < 0 || c.probeUnderlayTCPPort > 65535:
		return config{}, fmt.Errorf("--probe-underlay-tcp-port %d: want 0 (ICMP only) or a TCP port up to 65535", c.probeUnderlayTCPPort)
	case c.probeInterval > 0 && (c.probeTimeout < probe.MinTimeout || c.probeTimeout > c.probeInterval):
		return config{}, fmt.Errorf("--probe-timeout %v: want %v to --probe-interval (%v)", c.probeTimeout, probe.MinTimeout, c.probeInterval)
	case c.resync <= 0:
		return config{}, fmt.Errorf("--resync-interval %v: want a positive duration, such as 30s", c.resync)
	case rulesResync < 1:
		return config{}, fmt.Errorf("--iptables-resync %d: want 1 second or more", rulesResync)
	case klogV < 0:
		return config{}, fmt.Errorf("-v %d: want 0 or more", klogV)
	case strings.Count(c.kubeAnnotationPrefix, "/") > 1 || strings.HasPrefix(c.kubeAnnotationPrefix, "/") || c.kubeAnnotationPrefix == "":
		return config{}, fmt.Errorf("--kube-annotation-prefix %q: an annotation key holds at most one \"/\", after a DNS name", c.kubeAnnotationPrefix)
	}
	c.rulesResync = time.Duration(rulesResync) * time.Second
	if c.log, err = newLogConfig(klogV, klogToStderr, klogAlsoToStderr, klogLogDir, klogLogFile, klogStderrThreshold); err != nil {
		return config{}, err
	}
	if klogVModule != "" {
		c.ignoredKlogFlags = append(c.ignoredKlogFlags, "vmodule")
	}
	for name, v := range klogIgnoredString {
		if *v != "" {
			c.ignoredKlogFlags = append(c.ignoredKlogFlags, name)
		}
	}
	for name, v := range klogIgnoredBool {
		if *v {
			c.ignoredKlogFlags = append(c.ignoredKlogFlags, name)
		}
	}
	slices.Sort(c.ignoredKlogFlags)

	if c.node == "" {
		c.node = env("NODE_NAME")
	}
	return c, nil
}

// envName is the environment variable of a flag: FLANNELD_ and the name
// in upper case, dashes as underscores.
func envName(flagName string) string {
	return "FLANNELD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseAddr parses an address flag, which must be of the family it names.
func parseAddr(flagName, s string, ipv6 bool) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q is not an IP address", flagName, s)
	}
	a = a.Unmap()
	switch {
	case ipv6 && a.Is4():
		return netip.Addr{}, fmt.Errorf("%s %s is an IPv4 address; give it as --public-ip", flagName, a)
	case !ipv6 && a.Is6():
		return netip.Addr{}, fmt.Errorf("%s %s is an IPv6 address; give it as --public-ipv6", flagName, a)
	}
	return a, nil
}

// usage prints the flags in groups, each with its environment variable.
func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: flanneld [flags]\n\nEvery flag can also be set as FLANNELD_<NAME> in the environment (--etcd-endpoints is FLANNELD_ETCD_ENDPOINTS); the command line wins.\n")
	groups := flagGroups
	grouped := map[string]bool{}
	for _, g := range groups {
		for _, n := range g.names {
			grouped[n] = true
		}
	}
	var rest []string
	fs.VisitAll(func(f *flag.Flag) {
		if !grouped[f.Name] {
			rest = append(rest, f.Name)
		}
	})
	if len(rest) > 0 {
		groups = append(groups, flagGroup{"ungrouped", rest})
	}
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			kind, help := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if kind != "" {
				line += " " + kind
			}
			fmt.Fprintf(w, "%s\n    \t%s", line, help)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, " [%s]\n", envName(f.Name))
		}
	}
}
