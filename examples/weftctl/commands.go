package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/status"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cmdStatus prints a summary a person reads at a glance, one "Key:" per
// line so that it greps, with the failing and rejected peers named.
func cmdStatus(ctx context.Context, c *status.Client, o options, w io.Writer) (int, error) {
	doc, err := c.AllPeers(ctx, status.Query{Failing: true, Rejected: true})
	if err != nil {
		return 0, err
	}
	code := exitOK
	switch {
	case !doc.Ready:
		code = exitUnhealthy
	case doc.Summary.Failing > 0:
		code = exitDegraded
	}
	if o.output == "json" {
		return code, printJSON(w, doc)
	}
	now := doc.Time
	// Every string of the Document is shown through foreign: the daemon
	// relays what peers and the control plane wrote, and with --url the
	// daemon itself is another machine.
	ready := yesNo(doc.Ready)
	if doc.Reason != "" {
		ready += " (" + foreign(doc.Reason) + ")"
	}
	fmt.Fprintf(w, "Node:          %s\n", orDash(foreign(doc.Node)))
	fmt.Fprintf(w, "Ready:         %s\n", ready)
	if l := doc.Lease; l != nil {
		subnets := strings.TrimSpace(foreign(l.Subnet) + " " + foreign(l.IPv6Subnet))
		detail := []string{foreign(l.From), "since " + since(l.Since, now) + " ago"}
		if l.Expires != nil {
			detail = append(detail, "expires in "+l.Expires.Sub(now).Round(time.Minute).String())
		}
		if l.Renewals != nil {
			detail = append(detail, fmt.Sprintf("%d renewals", *l.Renewals))
		}
		fmt.Fprintf(w, "Lease:         %s (%s)\n", subnets, strings.Join(detail, ", "))
	} else {
		fmt.Fprintf(w, "Lease:         none\n")
	}
	if cfg := doc.Config; cfg != nil {
		var nc struct{ Network, IPv6Network string }
		json.Unmarshal(cfg.NetConf, &nc)
		fmt.Fprintf(w, "Network:       %s (%s)\n", strings.TrimSpace(foreign(nc.Network)+" "+foreign(nc.IPv6Network)), foreign(cfg.Source))
	}
	if doc.Offline != nil {
		fmt.Fprintf(w, "Local state:   running from it since %s (written %s ago)\n", doc.Offline.Since.UTC().Format(time.RFC3339), since(doc.Offline.Written, now))
	}
	fmt.Fprintf(w, "Control plane: %s\n", orDash(foreign(doc.Condition)))
	for _, f := range doc.Families {
		sync := "synced"
		if !f.Synced {
			sync = "not synced"
		}
		if f.Err != "" {
			sync += ": " + foreign(f.Err)
		}
		nh := ""
		if f.Nexthops {
			nh = ", nexthops"
		}
		fmt.Fprintf(w, "Device:        %s (%s) mac %s mtu %d%s, %s, last sync %s ago\n", foreign(f.Device.Name), foreign(f.Family), foreign(f.Device.MAC), f.Device.MTU, nh, sync, since(f.LastSync.Time, now))
		if o := f.Device.TXChecksumOffload; o != nil {
			fmt.Fprintf(w, "TX checksum:   %s\n", describeOffload(*o))
		}
	}
	s := doc.Summary
	fmt.Fprintf(w, "Peers:         %d, %d programmed, %d failed, %d rejected\n", s.Peers, s.Programmed, s.Failed, s.Rejected)
	if p := doc.Probing; p != nil {
		fmt.Fprintf(w, "Probes:        %d reachable, %d unreachable, %d not probed yet (each peer within %s)\n", p.Reachable, p.Unreachable, p.Unprobed, time.Duration(p.PeriodSeconds*float64(time.Second)))
		if p.MTUBlackHoles+p.UnderlayReachable+p.UnderlayUnreachable > 0 {
			fmt.Fprintf(w, "Diagnosed:     %d path MTU black holes, %d unreachable over the overlay only (underlay reachable), %d unreachable over the underlay too\n", p.MTUBlackHoles, p.UnderlayReachable, p.UnderlayUnreachable)
		}
	} else {
		fmt.Fprintf(w, "Probes:        off\n")
	}
	for _, p := range doc.Peers {
		if !p.Failing() {
			continue
		}
		fmt.Fprintf(w, "Failing:       %s\n", describePeer(p, now))
	}
	for _, p := range doc.Peers {
		if p.State == status.StateRejected {
			fmt.Fprintf(w, "Rejected:      %s %s: %s: %s\n", foreign(p.Family), foreign(p.Subnet), foreign(p.Reason), foreign(p.Detail))
		}
	}
	fmt.Fprintf(w, "Repairs:       %d in the last hour (weftctl repairs)\n", s.RepairsLastHour)
	return code, nil
}

// describePeer says in one line why a peer is failing.
func describePeer(p status.Peer, now time.Time) string {
	who := foreign(p.Subnet)
	if p.Node != "" {
		who += " (" + foreign(p.Node) + ")"
	}
	who += " at " + orDash(foreign(p.PublicIP))
	var why []string
	if p.State == status.StateFailed {
		why = append(why, "not programmed: "+foreign(p.Err))
		if len(p.Missing) > 0 {
			why[len(why)-1] += " (missing " + foreignList(p.Missing) + ")"
		}
	}
	switch pr := p.Probe; {
	case pr == nil:
	case pr.Diagnosis != "":
		why = append(why, fmt.Sprintf("%s for %s: %s", probeState(pr), since(pr.Since, now), foreign(pr.Diagnosis)))
	case !pr.Reachable:
		why = append(why, fmt.Sprintf("unreachable for %s: %s", since(pr.Since, now), foreign(pr.Err)))
	}
	return who + ": " + strings.Join(why, "; ")
}

// probeState is the PROBE column: the state of a peer's last probe, from
// its Reachable alone for a daemon that does not say more.
func probeState(pr *status.Probe) string {
	switch {
	case pr.State != "":
		return foreign(pr.State)
	case pr.Reachable:
		return status.ProbeReachable
	}
	return status.ProbeUnreachable
}

// cmdPeers prints the peers as a table, kubectl-style.
func cmdPeers(ctx context.Context, c *status.Client, o options, peer string, w io.Writer) (int, error) {
	doc, err := c.AllPeers(ctx, status.Query{Failing: o.failing, Rejected: o.rejected, Peer: peer})
	if err != nil {
		return 0, err
	}
	if peer != "" && len(doc.Peers) == 0 && !o.failing && !o.rejected {
		return 0, &status.DaemonError{Code: 404, Message: fmt.Sprintf("no peer matches %q: give a subnet, an address in it, a public IP or a node name", peer)}
	}
	if o.output == "json" {
		return exitOK, printJSON(w, doc.Peers)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	header := "FAMILY\tSUBNET\tNODE\tPUBLIC-IP\tSTATE\tPROBE\tCHANGED"
	if o.output == "wide" {
		header += "\tVTEP-MAC\tMISSING\tRTT\tDETAIL"
	}
	fmt.Fprintln(tw, header)
	for _, p := range doc.Peers {
		probe, rtt := "-", "-"
		if p.Probe != nil {
			probe = probeState(p.Probe)
			if p.Probe.Reachable {
				rtt = time.Duration(p.Probe.RTTSeconds * float64(time.Second)).Round(time.Microsecond).String()
			}
		}
		changed := "-"
		if p.Changed != nil {
			changed = since(*p.Changed, doc.Time)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s", foreign(p.Family), foreign(p.Subnet), orDash(foreign(p.Node)), orDash(foreign(p.PublicIP)), foreign(p.State), probe, changed)
		if o.output == "wide" {
			detail := foreign(p.Err)
			switch {
			case p.State == status.StateRejected:
				detail = foreign(p.Reason) + ": " + foreign(p.Detail)
			case detail == "" && p.Probe != nil && p.Probe.Diagnosis != "":
				detail = foreign(p.Probe.Diagnosis)
			case detail == "" && p.Probe != nil && !p.Probe.Reachable:
				detail = foreign(p.Probe.Err)
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s", orDash(foreign(p.VtepMAC)), foreignList(p.Missing), rtt, orDash(detail))
		}
		fmt.Fprintln(tw)
	}
	return exitOK, tw.Flush()
}

// cmdRepairs prints the repairs, oldest first.
func cmdRepairs(ctx context.Context, c *status.Client, o options, w io.Writer) (int, error) {
	doc, err := c.Status(ctx, status.Query{Limit: -1})
	if err != nil {
		return 0, err
	}
	repairs := []status.Repair{}
	for _, r := range doc.Repairs {
		if o.since == 0 || doc.Time.Sub(r.Time) <= o.since {
			repairs = append(repairs, r)
		}
	}
	if o.output == "json" {
		return exitOK, printJSON(w, repairs)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "TIME\tFAMILY\tWHAT\tWAS")
	for _, r := range repairs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), foreign(r.Family), foreign(r.What), foreign(r.Why))
	}
	return exitOK, tw.Flush()
}

// cmdProbe probes one peer now.
func cmdProbe(ctx context.Context, c *status.Client, o options, peer string, w io.Writer) (int, error) {
	a, err := c.Probe(ctx, peer)
	if err != nil {
		return 0, err
	}
	code := exitOK
	if !a.Result.Reachable || a.Result.State == status.ProbeMTUBlackHole {
		code = exitUnhealthy
	}
	if o.output == "json" {
		return code, printJSON(w, a)
	}
	who := foreign(a.Peer)
	if a.Node != "" {
		who += " (" + foreign(a.Node) + ")"
	}
	switch r := a.Result; {
	case r.Reachable && r.Diagnosis != "":
		fmt.Fprintf(w, "%s at %s: reachable, rtt %s, but %s\n", who, foreign(a.Addr), time.Duration(r.RTTSeconds*float64(time.Second)).Round(time.Microsecond), foreign(r.Diagnosis))
	case r.Reachable:
		fmt.Fprintf(w, "%s at %s: reachable, rtt %s\n", who, foreign(a.Addr), time.Duration(r.RTTSeconds*float64(time.Second)).Round(time.Microsecond))
	case r.Diagnosis != "":
		fmt.Fprintf(w, "%s at %s: unreachable: %s (%s)\n", who, foreign(a.Addr), foreign(r.Err), foreign(r.Diagnosis))
	default:
		fmt.Fprintf(w, "%s at %s: unreachable: %s\n", who, foreign(a.Addr), foreign(r.Err))
	}
	return code, nil
}

// describeOffload says what a device's TX checksum offload is, why, and
// what went wrong setting it.
func describeOffload(o status.Offload) string {
	state := foreign(o.State)
	if state == "" {
		state = "unknown"
	}
	out := fmt.Sprintf("offload %s (%s)", state, foreign(o.Why))
	if o.Err != "" {
		out += fmt.Sprintf(", want %s but: %s", foreign(o.Want), foreign(o.Err))
	}
	return out
}
