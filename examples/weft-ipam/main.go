// Command weft-ipam is a CNI IPAM plugin on package ipam: host-local's
// store and behaviour, plus sticky pod IPs. A pod restarted under the same
// namespace and name gets the IP it had.
//
// Configuration, as the "ipam" object of a network:
//
//	{
//	  "type": "weft-ipam",
//	  "subnetFile": "/run/flannel/subnet.env",  // default; read when "ranges" is absent
//	  "dataDir": "/var/lib/cni/networks",       // default; the store is <dataDir>/<network name>
//	  "hintTTL": "24h",                         // default; how long a released pod's IPs wait for it
//	  "ranges": [[{"subnet": "10.244.3.0/24", "rangeStart": "", "rangeEnd": "", "gateway": ""}]]
//	}
//
// "ranges" is host-local's: one set per family, of which weft uses the
// first range. flannel's CNI plugin fills it in from subnet.env when it
// delegates, so the plugin can stand in as flannel's IPAM unchanged (see
// 10-flannel.conflist).
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

type ipamConf struct {
	Type       string        `json:"type"`
	SubnetFile string        `json:"subnetFile"`
	DataDir    string        `json:"dataDir"`
	HintTTL    string        `json:"hintTTL"`
	Ranges     [][]rangeConf `json:"ranges"`
}

type rangeConf struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
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

// parseRanges takes "ranges" if given, else the subnet file.
func parseRanges(c ipamConf) ([]ipam.Range, error) {
	if len(c.Ranges) == 0 {
		return ipam.RangesFromSubnetEnv(c.SubnetFile)
	}
	var out []ipam.Range
	for i, set := range c.Ranges {
		if len(set) == 0 {
			return nil, fmt.Errorf("weft-ipam: ipam.ranges[%d] is empty", i)
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
	ips, err := a.Allocate(attachment(args), podOf(args.Args))
	if errors.Is(err, ipam.ErrExhausted) {
		return types.NewError(types.ErrTryAgainLater, "weft-ipam: "+strings.TrimPrefix(err.Error(), "ipam: "), "")
	}
	if err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return types.PrintResult(result(ips), c.CNIVersion)
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
