package main

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/vxlan"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{
		"FLANNELD_ETCD_ENDPOINTS":            "http://10.0.0.1:2379",
		"FLANNELD_IP_MASQ":                   "true",
		"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "30",
		"FLANNELD_PUBLIC_IP":                 "192.0.2.9",
		"FLANNELD_IFACE_REGEX":               "^ens",
		"NODE_NAME":                          "node-7",
	}
	c, err := parseFlags([]string{"--public-ip", "192.0.2.1", "--iface=eth1", "--iface", "10.0.0.5"}, envOf(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.etcdEndpoints != "http://10.0.0.1:2379" || !c.ipMasq || c.renewMargin != 30 || c.node != "node-7" ||
		!slices.Equal(c.ifaces, []string{"eth1", "10.0.0.5"}) || len(c.ifaceRegexes) != 1 || c.ifaceRegexes[0].String() != "^ens" {
		t.Errorf("environment not applied: %+v", c)
	}
	if c.publicIP != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("a command-line flag must win over the environment: %v", c.publicIP)
	}
	if c.subnetFile != "/run/flannel/subnet.env" || c.etcdPrefix != "/coreos.com/network" || !c.forwardRules || !c.setNodeUnavailable ||
		!c.masqRandomFully || c.rulesResync != 5*time.Second || c.kubeAnnotationPrefix != "flannel.alpha.coreos.com" || c.log.level != slog.LevelInfo || !c.log.toStderr {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := parseFlags(nil, envOf(map[string]string{"FLANNELD_HEALTHZ_PORT": "many"}), io.Discard); err == nil || !strings.Contains(err.Error(), "FLANNELD_HEALTHZ_PORT") {
		t.Errorf("a bad environment value: %v", err)
	}
	if _, err := parseFlags([]string{"--no-such-flag"}, envOf(nil), io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
}

// TestFlannelCommandLines parses the flags and environment flannel's own
// deployments use: the upstream kube-flannel.yml's DaemonSet, and the
// etcd-mode invocations flannel documents, klog's flags included.
func TestFlannelCommandLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(config) bool
	}{
		{
			name: "kube-flannel.yml",
			args: []string{"--ip-masq", "--kube-subnet-mgr"},
			env: map[string]string{"POD_NAME": "kube-flannel-ds-x7k2p", "POD_NAMESPACE": "kube-flannel",
				"EVENT_QUEUE_DEPTH": "5000", "CONT_WHEN_CACHE_NOT_READY": "false"},
			check: func(c config) bool {
				return c.ipMasq && c.kubeSubnetMgr && c.node == "" && len(c.ignoredKubeEnvVar) == 2
			},
		},
		{
			name: "etcd with TLS, as a systemd unit",
			args: []string{"-etcd-endpoints=https://10.0.0.10:2379,https://10.0.0.11:2379", "-etcd-prefix=/coreos.com/network",
				"-etcd-cafile=/etc/ssl/etcd/ca.pem", "-etcd-certfile=/etc/ssl/etcd/client.pem", "-etcd-keyfile=/etc/ssl/etcd/client-key.pem",
				"-iface=eth0", "-ip-masq", "-public-ip=10.0.0.21", "-v=2"},
			check: func(c config) bool {
				return c.etcdCAFile == "/etc/ssl/etcd/ca.pem" && c.etcdKeyfile == "/etc/ssl/etcd/client-key.pem" &&
					c.publicIP.String() == "10.0.0.21" && c.log.level == slog.LevelDebug
			},
		},
		{
			name: "every flag of flannel's, once",
			args: []string{"--etcd-username=u", "--etcd-password=p", "--kube-api-url=https://10.96.0.1", "--kubeconfig-file=/k",
				"--kube-annotation-prefix=example.com/net", "--net-config-path=/n", "--set-node-network-unavailable=false",
				"--iface=eth0", "--iface=10.0.0.2", "--iface-regex=^eth[0-9]+$", "--iface-can-reach=10.0.0.1",
				"--public-ip=10.0.0.2", "--public-ipv6=2001:db8::2", "--subnet-file=/s", "--subnet-lease-renew-margin=1439",
				"--ip-masq", "--ip-masq-fully-random-disable", "--iptables-forward-rules=false", "--iptables-resync=30",
				"--ip-blackhole-route", "--healthz-ip=127.0.0.1", "--healthz-port=8471", "--version",
				"--v=0", "--vmodule=main=4", "--logtostderr=true", "--log_dir=/var/log/flannel"},
			check: func(c config) bool {
				return c.kubeAnnotationPrefix == "example.com/net" && !c.setNodeUnavailable && len(c.ifaces) == 2 &&
					c.ifaceCanReach.String() == "10.0.0.1" && c.publicIPv6.String() == "2001:db8::2" && !c.masqRandomFully &&
					!c.forwardRules && c.rulesResync == 30*time.Second && c.blackholeRoute && c.healthzIP.String() == "127.0.0.1" &&
					c.healthzPort == 8471 && c.version && slices.Equal(c.ignoredKlogFlags, []string{"vmodule"})
			},
		},
		{
			name: "etcd mode from the environment",
			env: map[string]string{"FLANNELD_ETCD_ENDPOINTS": "http://10.0.0.10:2379", "FLANNELD_IFACE": "eth1",
				"FLANNELD_PUBLIC_IPV6": "2001:db8::9", "FLANNELD_IP_BLACKHOLE_ROUTE": "true", "FLANNELD_IPTABLES_FORWARD_RULES": "false"},
			check: func(c config) bool {
				return slices.Equal(c.ifaces, []string{"eth1"}) && c.publicIPv6.String() == "2001:db8::9" && c.blackholeRoute && !c.forwardRules
			},
		},
		{
			name: "klog to a file",
			args: []string{"-logtostderr=false", "-log_dir=/var/log/flannel", "-alsologtostderr", "-stderrthreshold=WARNING"},
			check: func(c config) bool {
				return !c.log.toStderr && c.log.file == "/var/log/flannel/flanneld.log" && c.log.alsoAll && c.log.threshold == slog.LevelWarn
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, envOf(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("parsed as %+v", c)
			}
		})
	}
}

// TestFlagValidation: values flannel refuses, or that cannot work, are an
// error naming the flag and what it takes.
func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--resync-interval=0"}, "--resync-interval 0s: want a positive duration"},
		{[]string{"--resync-interval=-5s"}, "--resync-interval -5s"},
		{[]string{"--subnet-lease-renew-margin=-1"}, "--subnet-lease-renew-margin -1: want 1 to 1439 minutes"},
		{[]string{"--subnet-lease-renew-margin=1440"}, "--subnet-lease-renew-margin 1440"},
		{[]string{"--subnet-lease-ttl=1s"}, "--subnet-lease-ttl 1s: want at least 2s"},
		{[]string{"--healthz-port=70000"}, "--healthz-port 70000"},
		{[]string{"--healthz-ip=localhost"}, `--healthz-ip "localhost" is not an IP address`},
		{[]string{"--iptables-resync=0"}, "--iptables-resync 0"},
		{[]string{"--public-ip=2001:db8::1"}, "--public-ip 2001:db8::1 is an IPv6 address; give it as --public-ipv6"},
		{[]string{"--public-ipv6=192.0.2.1"}, "--public-ipv6 192.0.2.1 is an IPv4 address; give it as --public-ip"},
		{[]string{"--public-ip=host-1"}, `--public-ip "host-1" is not an IP address`},
		{[]string{"--iface-regex=eth[0-"}, `--iface-regex "eth[0-"`},
		{[]string{"--iface-can-reach=gateway"}, `--iface-can-reach "gateway" is not an IP address`},
		{[]string{"--kube-annotation-prefix=a/b/c"}, `--kube-annotation-prefix "a/b/c"`},
		{[]string{"--kube-annotation-prefix=/net"}, `--kube-annotation-prefix "/net"`},
		{[]string{"-v=-1"}, "-v -1"},
		{[]string{"-logtostderr=false"}, "-logtostderr=false needs -log_file or -log_dir"},
		{[]string{"-stderrthreshold=LOUD"}, `-stderrthreshold "LOUD"`},
		{[]string{"--state-max-age=0"}, "--state-max-age 0s: want a positive duration"},
		{[]string{"--offline-after=-1s"}, "--offline-after -1s: want a positive duration"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
	} {
		_, err := parseFlags(tc.args, envOf(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestHelpListsEveryFlag: --help shows every flag in a group, with its
// environment variable.
func TestHelpListsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, envOf(nil), &out); err != flag.ErrHelp {
		t.Fatalf("--help: %v", err)
	}
	grouped := map[string]bool{}
	for _, g := range flagGroups {
		for _, n := range g.names {
			grouped[n] = true
		}
	}
	help := out.String()
	if strings.Contains(help, "\nungrouped:") {
		t.Errorf("flags in no group:\n%s", help[strings.Index(help, "\nungrouped:"):])
	}
	for n := range grouped {
		if !strings.Contains(help, "  --"+n+" ") && !strings.Contains(help, "  --"+n+"\n") {
			t.Errorf("--help lacks --%s", n)
		}
		if !strings.Contains(help, envName(n)) {
			t.Errorf("--help lacks %s", envName(n))
		}
	}
	for _, want := range []string{"iface-can-reach", "public-ipv6", "kube-annotation-prefix", "set-node-network-unavailable", "ip-blackhole-route",
		"ip-masq-fully-random-disable", "iptables-forward-rules", "iptables-resync", "vmodule", "log_dir", "logtostderr"} {
		if !grouped[want] {
			t.Errorf("flannel's --%s is missing", want)
		}
	}
}

// TestTXChecksumOffloadFlag: the flag and its FLANNELD_ variable set the
// override, unset follows net-conf.json, a wrong value names the flag and
// the values, and --help marks it as weft's.
func TestTXChecksumOffloadFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want vxlan.ChecksumOffload
	}{
		{nil, nil, ""},
		{[]string{"--vxlan-tx-checksum-offload=off"}, nil, vxlan.ChecksumOffloadOff},
		{nil, map[string]string{"FLANNELD_VXLAN_TX_CHECKSUM_OFFLOAD": "on"}, vxlan.ChecksumOffloadOn},
		{[]string{"--vxlan-tx-checksum-offload", "auto"}, map[string]string{"FLANNELD_VXLAN_TX_CHECKSUM_OFFLOAD": "off"}, vxlan.ChecksumOffloadAuto},
	} {
		c, err := parseFlags(tc.args, envOf(tc.env), io.Discard)
		if err != nil || c.txChecksumOffload != tc.want {
			t.Errorf("%q %v: %q, %v; want %q", tc.args, tc.env, c.txChecksumOffload, err, tc.want)
		}
	}
	_, err := parseFlags(nil, envOf(map[string]string{"FLANNELD_VXLAN_TX_CHECKSUM_OFFLOAD": "disable"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--vxlan-tx-checksum-offload") || !strings.Contains(err.Error(), "auto, on or off") {
		t.Errorf("a bad value: %v", err)
	}
	var help bytes.Buffer
	parseFlags([]string{"--help"}, envOf(nil), &help)
	if !regexp.MustCompile(`--vxlan-tx-checksum-offload string\n\s+[^\n]*\(a weft extension\) \[FLANNELD_VXLAN_TX_CHECKSUM_OFFLOAD\]`).MatchString(help.String()) {
		t.Errorf("--help lacks the flag as a weft extension:\n%s", help.String())
	}
}
