package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// config is flanneld's command line. Each flag can also be given as an
// environment variable: FLANNELD_ and the flag name in upper case with
// dashes as underscores (--etcd-endpoints is FLANNELD_ETCD_ENDPOINTS). A
// flag on the command line wins over the environment.
type config struct {
	etcdEndpoints string
	etcdPrefix    string
	etcdKeyfile   string
	etcdCertfile  string
	etcdCAFile    string
	etcdUsername  string
	etcdPassword  string
	kubeSubnetMgr bool
	// kubeAssignPodCIDRs: a weft extension; see kube.Options.AssignPodCIDRs.
	kubeAssignPodCIDRs bool
	kubeconfig         string
	kubeAPIURL         string
	netConfPath        string
	iface              string
	publicIP           string
	subnetFile         string
	ipMasq             bool
	healthzIP          string
	healthzPort        int
	renewMargin        int // minutes, as flannel
	leaseTTL           time.Duration
	node               string
	resync             time.Duration
	version            bool
}

func parseFlags(args []string, env func(string) string, stderr io.Writer) (config, error) {
	var c config
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
	fs.BoolVar(&c.kubeAssignPodCIDRs, "kube-assign-pod-cidrs", false, "kube mode: give this node a free PodCIDR when it has none, for clusters whose kube-controller-manager does not allocate them (a weft extension; needs RBAC patch on nodes)")
	fs.StringVar(&c.kubeconfig, "kubeconfig-file", "", "kubeconfig file location (kube mode)")
	fs.StringVar(&c.kubeAPIURL, "kube-api-url", "", "Kubernetes API server URL (kube mode)")
	fs.StringVar(&c.netConfPath, "net-config-path", "/etc/kube-flannel/net-conf.json", "path to the network configuration file (kube mode)")
	fs.StringVar(&c.iface, "iface", "", "interface to use for inter-host communication (default: the one with the default route)")
	fs.StringVar(&c.publicIP, "public-ip", "", "IP accessible by other nodes for inter-host communication (default: the interface's address)")
	fs.StringVar(&c.subnetFile, "subnet-file", "/run/flannel/subnet.env", "filename where env variables (subnet, MTU, ...) will be written to")
	fs.BoolVar(&c.ipMasq, "ip-masq", false, "set up IP masquerade rule for traffic destined outside of the overlay network")
	fs.StringVar(&c.healthzIP, "healthz-ip", "0.0.0.0", "the IP address for the healthz and readyz server to listen on")
	fs.IntVar(&c.healthzPort, "healthz-port", 0, "the port for the healthz and readyz server; 0 disables it")
	fs.IntVar(&c.renewMargin, "subnet-lease-renew-margin", 60, "subnet lease renewal margin, in minutes")
	fs.DurationVar(&c.leaseTTL, "subnet-lease-ttl", 24*time.Hour, "life of a subnet lease that is not renewed (a weft extension; flannel fixes it at 24h)")
	fs.StringVar(&c.node, "node-name", "", "stable identity of this node, the lease owner and VTEP MAC seed (default: NODE_NAME, then the hostname); unique per host: a cloned VM must change its hostname or set this (a weft extension)")
	fs.DurationVar(&c.resync, "resync-interval", 30*time.Second, "period of the datapath's unprompted reconcile")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
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
		name := "FLANNELD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := env(name); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment variable %s=%q: %v", name, v, e)
			}
		}
	})
	if err != nil {
		return config{}, err
	}
	if c.node == "" {
		c.node = env("NODE_NAME")
	}
	if c.node == "" {
		c.node, _ = os.Hostname()
	}
	return c, nil
}
