// Command weft-announce is a chained CNI plugin that makes a pod's new MAC
// known when its interface is set up (package announce): it runs after
// the plugin that makes the interface (flannel's, delegating to bridge),
// reads that plugin's result, moves the node's neighbour entries for the
// pod's addresses to the new MAC, and sends a gratuitous ARP and an
// unsolicited neighbour advertisement from the pod's interface. A pod
// re-created under its name with its sticky IP (weft-ipam) is then
// reachable at once instead of after 20 to 40 s; so is a pod that gets an
// address another pod released a moment ago.
//
// Configuration, as an entry of a conflist's "plugins" after flannel:
//
//	{
//	  "type": "weft-announce",
//	  "count": 3,          // default; times each frame is sent
//	  "interval": "50ms",  // default; between two sends
//	  "upTimeout": "2s"    // default; longest wait for the interface to be up
//	}
//
// upTimeout is at most 10s, and (count-1) x interval at most 10s, so that
// an ADD stays far inside the runtime's request timeout.
//
// ADD passes the previous result through unchanged; DEL, CHECK, GC and
// STATUS do nothing. An interface that does not come up within upTimeout
// is announced anyway, with a warning on stderr (the runtime's log); an
// interface the result names but that cannot be found fails the ADD.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/announce"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: noop, Check: noop, GC: noop, Status: noop},
		version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "weft-announce: announce a pod's new MAC")
}

// netConf is the plugin's configuration, with the previous result.
type netConf struct {
	types.PluginConf
	Count     int    `json:"count"`
	Interval  string `json:"interval"`
	UpTimeout string `json:"upTimeout"`
}

func noop(*skel.CmdArgs) error { return nil }

// options reads the configuration's tuning; an error names the field.
func (c *netConf) options() (announce.Options, error) {
	o := announce.Options{Count: c.Count}
	if c.Count < 0 || c.Count > 100 {
		return o, fmt.Errorf("weft-announce: count %d: want 1 to 100, or leave it out for %d", c.Count, announce.DefaultCount)
	}
	for _, f := range []struct {
		name, v string
		dst     *time.Duration
		max     time.Duration
	}{{"interval", c.Interval, &o.Interval, time.Second}, {"upTimeout", c.UpTimeout, &o.UpTimeout, maxUpTimeout}} {
		if f.v == "" {
			continue
		}
		d, err := time.ParseDuration(f.v)
		if err != nil || d <= 0 || d > f.max {
			return o, fmt.Errorf("weft-announce: %s %q: want a duration like \"50ms\", at most %v", f.name, f.v, f.max)
		}
		*f.dst = d
	}
	d := o.WithDefaults()
	if spread := time.Duration(d.Count-1) * d.Interval; spread > maxSpread {
		return o, fmt.Errorf("weft-announce: count %d with interval %v sends for %v; keep (count-1) x interval within %v", d.Count, d.Interval, spread, maxSpread)
	}
	return o, nil
}

// The longest an ADD may spend waiting and announcing, so that the whole
// of it (see budget) stays far inside a runtime's request timeout
// (kubelet's --runtime-request-timeout is 2 minutes by default): a
// sandbox that takes longer is torn down and created again.
const (
	maxUpTimeout = 10 * time.Second
	maxSpread    = 10 * time.Second
)

func cmdAdd(args *skel.CmdArgs) error {
	c, opts, prev, err := parse(args.StdinData)
	if err != nil {
		return err
	}
	if addrs := podAddrs(prev, args.IfName); len(addrs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), budget(opts))
		defer cancel()
		rep, err := announce.Announce(ctx, announce.Target{NetNS: args.Netns, IfName: args.IfName, Addrs: addrs}, opts)
		if err != nil {
			return types.NewError(types.ErrInternal, err.Error(), "")
		}
		if len(rep.NotHeld) > 0 {
			slog.New(slog.NewTextHandler(os.Stderr, nil)).Warn("weft-announce: the previous result names addresses the pod's interface does not hold; not announced",
				"container", args.ContainerID, "interface", args.IfName, "addresses", rep.NotHeld)
		}
		if !rep.Up {
			slog.New(slog.NewTextHandler(os.Stderr, nil)).Warn("weft-announce: the pod's interface, its peer or the bridge was not up in time; announced anyway",
				"container", args.ContainerID, "interface", args.IfName, "waited", rep.Waited)
		}
	}
	return types.PrintResult(c.PrevResult, c.CNIVersion)
}

// budget is how long an ADD may take to announce with opts: the wait for
// the links, the spacing of the sends, and 10 s for netlink and the
// sends themselves. A configuration that options accepts is carried out
// whole: at most maxUpTimeout's wait and maxSpread of sends, 30 s in all.
func budget(opts announce.Options) time.Duration {
	d := opts.WithDefaults()
	return d.UpTimeout + time.Duration(d.Count-1)*d.Interval + 10*time.Second
}

// parse reads the configuration and the previous result. Its errors are
// CNI errors naming the field.
func parse(stdin []byte) (*netConf, announce.Options, *types100.Result, error) {
	var c netConf
	if err := json.Unmarshal(stdin, &c); err != nil {
		return nil, announce.Options{}, nil, types.NewError(types.ErrDecodingFailure, "weft-announce: the network configuration is not valid JSON", err.Error())
	}
	opts, err := c.options()
	if err != nil {
		return nil, opts, nil, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	if c.RawPrevResult == nil {
		return nil, opts, nil, types.NewError(types.ErrInvalidNetworkConfig, "weft-announce: no prevResult: chain it in a conflist after the plugin that makes the pod's interface (flannel or bridge)", "")
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, opts, nil, types.NewError(types.ErrDecodingFailure, "weft-announce: prevResult: "+err.Error(), "")
	}
	prev, err := types100.NewResultFromResult(c.PrevResult)
	if err != nil {
		return nil, opts, nil, types.NewError(types.ErrDecodingFailure, "weft-announce: prevResult: "+err.Error(), "")
	}
	return &c, opts, prev, nil
}

// podAddrs returns the addresses the result gives the pod's interface
// ifName (the one in a sandbox): those whose interface index names it, or
// every address when none names an interface (results of old plugins).
func podAddrs(r *types100.Result, ifName string) []netip.Addr {
	pod := -1
	for i, iface := range r.Interfaces {
		if iface.Sandbox != "" && iface.Name == ifName {
			pod = i
		}
	}
	var named, all []netip.Addr
	for _, ip := range r.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		all = append(all, a)
		if ip.Interface != nil && *ip.Interface == pod && pod >= 0 {
			named = append(named, a)
		}
	}
	if len(named) > 0 {
		return named
	}
	for _, ip := range r.IPs {
		if ip.Interface != nil {
			return nil // every address is another interface's
		}
	}
	return all
}
