// Command weft-ipam is a CNI IPAM plugin on package ipam: host-local's
// store and behaviour, plus sticky pod IPs. A pod restarted under the same
// namespace and name gets the IP it had, once no live attachment holds
// it: a sandbox's reservation is live until its DEL or a GC, so a sandbox
// re-created without a DEL of the last gets another IP, and the pod gets
// its own back at its next sandbox after that DEL. Chain weft-announce
// after the plugin that makes the pod's interface (see
// 10-flannel.conflist), so that a pod that gets its IP back on a new MAC
// is reachable at once.
//
// Configuration, as the "ipam" object of a network:
//
//	{
//	  "type": "weft-ipam",
//	  "subnetFile": "/run/flannel/subnet.env",  // default; read when no range is given
//	  "dataDir": "/var/lib/cni/networks",       // default; the store is <dataDir>/<network name>
//	  "hintTTL": "24h",                         // default; how long a released pod's IPs wait for it
//	  "ranges": [[{"subnet": "10.244.3.0/24", "rangeStart": "", "rangeEnd": "", "gateway": ""}]],
//	  "routes": [{"dst": "10.244.0.0/16"}],
//	  "resolvConf": "/etc/resolv.conf"
//	}
//
// It reads host-local's whole IPAM configuration. Each field of host-local's,
// and what weft-ipam does with it:
//
//	field                 host-local                          weft-ipam
//	type                  "host-local"                        "weft-ipam"
//	dataDir               store directory, per network name   the same, and the same layout: either plugin reads the other's
//	ranges                sets of ranges, one IP per set      one IP per set; a set holds one range (several are refused, naming the set)
//	ranges[][].subnet     CIDR                                the same
//	ranges[][].rangeStart first address handed out            the same
//	ranges[][].rangeEnd   last address handed out             the same
//	ranges[][].gateway    excluded, returned as the gateway   the same (default: the subnet's first address)
//	subnet, rangeStart,   one range at the top of "ipam",     the same: a set of its own, before "ranges"
//	rangeEnd, gateway     from before "ranges"
//	routes                returned in the result              returned in the result, as given
//	resolvConf            nameserver/domain/search/options    the same, parsed the same way
//	                      lines returned as DNS
//	CNI_ARGS IP=,         the IPs to hand out                 refused with an error: use host-local for static IPs
//	args.cni.ips,
//	runtimeConfig.ips
//
// and weft-ipam's own: subnetFile (flannel's subnet.env, read for the
// range when none is given) and hintTTL. flannel's CNI plugin fills in
// "ranges" and "routes" from subnet.env when it delegates, so the plugin
// can stand in as flannel's IPAM unchanged (see 10-flannel.conflist).
//
// It implements ADD, DEL, CHECK, GC and STATUS (STATUS fails with code 50
// when a range has no address left) for CNI spec versions up to 1.1.0.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/ipam"
)

// Defaults of the configuration.
const (
	defaultSubnetFile = "/run/flannel/subnet.env"
	defaultDataDir    = "/var/lib/cni/networks"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus},
		version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "weft-ipam: sticky pod IPs on host-local's store")
}

// netConf is the part of the network configuration the plugin reads.
type netConf struct {
	CNIVersion       string               `json:"cniVersion"`
	Name             string               `json:"name"`
	IPAM             ipamConf             `json:"ipam"`
	ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
}

// ipamConf is host-local's IPAM configuration, every field of it, and
// weft's own (subnetFile, hintTTL). See the package doc for what each
// does here.
type ipamConf struct {
	Type       string        `json:"type"`
	SubnetFile string        `json:"subnetFile"`
	DataDir    string        `json:"dataDir"`
	HintTTL    string        `json:"hintTTL"`
	Ranges     [][]rangeConf `json:"ranges"`
	Routes     []types.Route `json:"routes"`
	ResolvConf string        `json:"resolvConf"`
	// host-local's single range, from before "ranges".
	rangeConf
}

type rangeConf struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

// requested are the IPs a runtime may ask host-local for: CNI_ARGS IP=,
// the network's args.cni.ips, and the "ips" capability.
type requested struct {
	Args *struct {
		CNI *struct {
			IPs []string `json:"ips"`
		} `json:"cni"`
	} `json:"args"`
	RuntimeConfig *struct {
		IPs []string `json:"ips"`
	} `json:"runtimeConfig"`
}

// load parses the configuration and opens the allocator. With needRanges
// false (DEL, GC, CHECK), a subnet file that cannot be read leaves the
// allocator without ranges rather than failing.
func load(args *skel.CmdArgs, needRanges bool) (*netConf, *ipam.Allocator, error) {
	var c netConf
	if err := json.Unmarshal(args.StdinData, &c); err != nil {
		return nil, nil, types.NewError(types.ErrDecodingFailure, "weft-ipam: the network configuration is not valid JSON", err.Error())
	}
	if c.Name == "" {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, "weft-ipam: the network configuration has no \"name\"", "")
	}
	if c.IPAM.SubnetFile == "" {
		c.IPAM.SubnetFile = defaultSubnetFile
	}
	if c.IPAM.DataDir == "" {
		c.IPAM.DataDir = defaultDataDir
	}
	ttl := ipam.DefaultHintTTL
	if c.IPAM.HintTTL != "" {
		d, err := time.ParseDuration(c.IPAM.HintTTL)
		if err != nil || d <= 0 {
			return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("weft-ipam: ipam.hintTTL %q is not a positive duration like \"24h\"", c.IPAM.HintTTL), "")
		}
		ttl = d
	}
	ranges, err := parseRanges(c.IPAM)
	if err != nil && needRanges {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	a, err := ipam.New(ipam.Config{Dir: filepath.Join(c.IPAM.DataDir, c.Name), Ranges: ranges, HintTTL: ttl})
	if err != nil {
		return nil, nil, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	return &c, a, nil
}

// parseRanges takes "ranges", after host-local's single range ("subnet"
// at the top of "ipam") if that is given too, or without either the
// subnet file. A set holds one
// range here: host-local's sets of several ranges are refused, naming
// the field, rather than half used.
func parseRanges(c ipamConf) ([]ipam.Range, error) {
	if c.Subnet != "" {
		// As host-local: the single range comes first, as a set of its own.
		c.Ranges = append([][]rangeConf{{c.rangeConf}}, c.Ranges...)
	}
	if len(c.Ranges) == 0 {
		return ipam.RangesFromSubnetEnv(c.SubnetFile)
	}
	var out []ipam.Range
	for i, set := range c.Ranges {
		if len(set) == 0 {
			return nil, fmt.Errorf("weft-ipam: ipam.ranges[%d] is empty", i)
		}
		if len(set) > 1 {
			return nil, fmt.Errorf("weft-ipam: ipam.ranges[%d] holds %d ranges; weft-ipam takes one range per set (one set per family): merge them into one subnet, or use host-local", i, len(set))
		}
		rc := set[0]
		var r ipam.Range
		var err error
		if r.Subnet, err = netip.ParsePrefix(rc.Subnet); err != nil {
			return nil, fmt.Errorf("weft-ipam: ipam.ranges[%d][0].subnet %q is not a CIDR", i, rc.Subnet)
		}
		for _, f := range []struct {
			name, v string
			dst     *netip.Addr
		}{{"rangeStart", rc.RangeStart, &r.Start}, {"rangeEnd", rc.RangeEnd, &r.End}, {"gateway", rc.Gateway, &r.Gateway}} {
			if f.v == "" {
				continue
			}
			if *f.dst, err = netip.ParseAddr(f.v); err != nil {
				return nil, fmt.Errorf("weft-ipam: ipam.ranges[%d][0].%s %q is not an IP address", i, f.name, f.v)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// podOf reads the pod identity from CNI_ARGS, where Kubernetes runtimes
// pass K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID. Without them the
// plugin behaves as host-local.
func podOf(args string) ipam.Pod {
	var p ipam.Pod
	for _, kv := range strings.Split(args, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			p.Namespace = v
		case "K8S_POD_NAME":
			p.Name = v
		case "K8S_POD_UID":
			p.UID = v
		}
	}
	return p
}

func attachment(args *skel.CmdArgs) ipam.Attachment {
	return ipam.Attachment{ContainerID: args.ContainerID, IfName: args.IfName}
}

func cmdAdd(args *skel.CmdArgs) error {
	c, a, err := load(args, true)
	if err != nil {
		return err
	}
	if ips := requestedIPs(args); len(ips) > 0 {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("weft-ipam: IPs %v were requested (CNI_ARGS IP=, args.cni.ips or the ips capability); weft-ipam does not hand out requested IPs: use host-local for this network", ips), "")
	}
	routes, err := parseRoutes(c.IPAM.Routes)
	if err != nil {
		return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	var dns types.DNS
	if c.IPAM.ResolvConf != "" {
		if dns, err = parseResolvConf(c.IPAM.ResolvConf); err != nil {
			return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
		}
	}
	ips, err := a.Allocate(attachment(args), podOf(args.Args))
	if errors.Is(err, ipam.ErrExhausted) {
		return types.NewError(types.ErrTryAgainLater, "weft-ipam: "+strings.TrimPrefix(err.Error(), "ipam: "), "")
	}
	if err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	r := result(ips)
	r.Routes, r.DNS = routes, dns
	return types.PrintResult(r, c.CNIVersion)
}

// parseRoutes checks ipam.routes, which come back in the result as given,
// as host-local returns them: flannel's CNI plugin puts the Network there,
// the pods' route to every other node when the bridge is not their
// default gateway.
func parseRoutes(in []types.Route) ([]*types.Route, error) {
	out := make([]*types.Route, 0, len(in))
	for i := range in {
		r := in[i]
		if r.Dst.IP == nil {
			return nil, fmt.Errorf("weft-ipam: ipam.routes[%d] has no \"dst\"", i)
		}
		out = append(out, &r)
	}
	return out, nil
}

// requestedIPs lists the IPs the runtime asked for, any way host-local
// reads them.
func requestedIPs(args *skel.CmdArgs) []string {
	var ips []string
	for _, kv := range strings.Split(args.Args, ";") {
		if k, v, _ := strings.Cut(kv, "="); k == "IP" && v != "" {
			ips = append(ips, strings.Split(v, ",")...)
		}
	}
	var r requested
	if json.Unmarshal(args.StdinData, &r) == nil {
		if r.Args != nil && r.Args.CNI != nil {
			ips = append(ips, r.Args.CNI.IPs...)
		}
		if r.RuntimeConfig != nil {
			ips = append(ips, r.RuntimeConfig.IPs...)
		}
	}
	return ips
}

func result(ips []ipam.IP) *types100.Result {
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	for _, ip := range ips {
		r.IPs = append(r.IPs, &types100.IPConfig{
			Address: net.IPNet{IP: ip.Address.Addr().AsSlice(), Mask: net.CIDRMask(ip.Address.Bits(), ip.Address.Addr().BitLen())},
			Gateway: ip.Gateway.AsSlice(),
		})
	}
	return r
}

// cmdDel never fails on missing state: nothing held is released already.
func cmdDel(args *skel.CmdArgs) error {
	_, a, err := load(args, false)
	if err != nil {
		return err
	}
	if err := a.Release(attachment(args), podOf(args.Args)); err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	_, a, err := load(args, false)
	if err != nil {
		return err
	}
	ips, err := a.Lookup(attachment(args))
	if err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	if len(ips) == 0 {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("weft-ipam: container %s interface %s holds no IP", args.ContainerID, args.IfName), "")
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	c, a, err := load(args, false)
	if err != nil {
		return err
	}
	valid := make([]ipam.Attachment, 0, len(c.ValidAttachments))
	for _, v := range c.ValidAttachments {
		valid = append(valid, ipam.Attachment{ContainerID: v.ContainerID, IfName: v.IfName})
	}
	if _, err := a.GC(valid); err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return nil
}

// cmdStatus fails with code 50 (cannot serve ADD) when a range is full.
func cmdStatus(args *skel.CmdArgs) error {
	_, a, err := load(args, true)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	usage, err := a.Usage()
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	for _, u := range usage {
		if u.Free() == 0 {
			return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("weft-ipam: no IP addresses available in range %s", u.Range.Subnet), "")
		}
	}
	return nil
}
