// Command weftctl shows what a weft daemon (flanneld) sees of its overlay:
// whether it is ready and why, its lease, its peers with what is
// programmed for each and whether each answers, and the drift it
// repaired. It reads the daemon's status over its unix socket or its
// health server; see package status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/weftnet/weft/status"
)

// Exit codes, for scripts.
const (
	exitOK          = 0 // done; status: ready, nothing failing; probe: the peer answered
	exitUnhealthy   = 1 // status: not ready; probe: no reply, or a path MTU black hole
	exitUsage       = 2 // bad command line, or the daemon refused the request (no such peer, probing off, busy)
	exitUnreachable = 3 // the daemon could not be reached, or answered something unreadable
	exitDegraded    = 4 // status: ready, but some peers are failing
)

const usageText = `weftctl: what a weft daemon sees of its overlay.

Usage:
  weftctl [flags] status            ready or not and why, the lease, the peers, the repairs
  weftctl [flags] peers [PEER]      the peers, one a line (PEER: subnet, address, public IP or node)
  weftctl [flags] repairs           the drift the datapath repaired, oldest first
  weftctl [flags] probe PEER        probe one peer now: over the overlay, at full size, and its underlay if need be

Flags (before or after the command):
  --socket PATH   the daemon's status socket (default %s)
  --url URL       the daemon's health server instead, e.g. http://10.0.0.5:8080
  -o FORMAT       json, or wide for more columns (peers, repairs)
  --timeout D     give up after D (default 10s)
  --failing       peers: only those the kernel refused, that do not answer probes, or behind a path MTU black hole
  --rejected      peers: only the leases admission rejects
  --since D       repairs: only those of the last D, e.g. 1h

Examples:
  weftctl status
  weftctl peers --failing
  weftctl peers -o wide 10.244.3.0/24
  weftctl peers -o json | jq '.[] | select(.probe.reachable == false) | .subnet'
  weftctl repairs --since 1h
  weftctl probe node-b
  weftctl --url http://10.0.0.5:8080 status

Exit status:
  0  done; status: ready and no peer failing; probe: the peer answered
  1  status: not ready; probe: no reply, or a path MTU black hole
  2  usage error, or the daemon refused the request (no such peer, probing off, busy)
  3  the daemon could not be reached, or its answer was unreadable
  4  status: ready, but some peers are failing
`

type options struct {
	socket, url, output string
	timeout             time.Duration
	failing, rejected   bool
	since               time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is weftctl with args, writing to stdout and stderr; it returns the
// exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("weftctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, usageText, status.DefaultSocket) }
	fs.StringVar(&o.socket, "socket", "", "")
	fs.StringVar(&o.url, "url", "", "")
	fs.StringVar(&o.output, "o", "", "")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "")
	fs.BoolVar(&o.failing, "failing", false, "")
	fs.BoolVar(&o.rejected, "rejected", false, "")
	fs.DurationVar(&o.since, "since", 0, "")
	// Flags may come before and after the command: parse until the
	// command, then the rest.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var positional []string
	for len(rest) > 0 {
		if rest[0] == "--" { // the rest are arguments, whatever they look like
			positional = append(positional, rest[1:]...)
			break
		}
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		n := len(rest) - fs.NArg() // what Parse took
		if fs.NArg() == 0 {
			break
		}
		if n > 0 && rest[n-1] == "--" {
			positional = append(positional, fs.Args()...)
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch o.output {
	case "", "json", "wide":
	default:
		fmt.Fprintf(stderr, "weftctl: -o %q: want json or wide\n", o.output)
		return exitUsage
	}
	if o.socket == "" && o.url == "" {
		o.socket = status.DefaultSocket
	}
	client, err := status.NewClient(o.socket, o.url)
	if err != nil {
		fmt.Fprintln(stderr, "weftctl:", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	// What the daemon reports holds text other machines wrote (node
	// names, in peer leases): the human formats show each such string
	// through foreign; JSON escapes it already.
	out := stdout

	want := func(n int, what string) bool {
		if len(positional) > n {
			fmt.Fprintf(stderr, "weftctl %s: %s\n", cmd, what)
			return false
		}
		return true
	}
	var code int
	switch cmd {
	case "status":
		if !want(0, "takes no arguments") {
			return exitUsage
		}
		code, err = cmdStatus(ctx, client, o, out)
	case "peers":
		if !want(1, "takes at most one peer") {
			return exitUsage
		}
		peer := ""
		if len(positional) == 1 {
			peer = positional[0]
		}
		code, err = cmdPeers(ctx, client, o, peer, out)
	case "repairs":
		if !want(0, "takes no arguments") {
			return exitUsage
		}
		code, err = cmdRepairs(ctx, client, o, out)
	case "probe":
		if len(positional) != 1 {
			fmt.Fprintln(stderr, "weftctl probe: give one peer: its subnet, an address in it, its public IP or its node name")
			return exitUsage
		}
		code, err = cmdProbe(ctx, client, o, positional[0], out)
	case "help":
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, usageText, status.DefaultSocket)
		return exitOK
	default:
		fmt.Fprintf(stderr, "weftctl: unknown command %q; see weftctl --help\n", cmd)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(stderr, "weftctl:", foreign(err.Error()))
		// The daemon answered and refused (no such peer, probing off,
		// busy): the request is what to change. Anything else: it could
		// not be reached or read.
		if _, refused := errors.AsType[*status.DaemonError](err); refused {
			return exitUsage
		}
		return exitUnreachable
	}
	return code
}

// since formats how long ago t was, kubectl-style: 45s, 3m, 5h, 2d.
func since(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOrDash(s []string) string { return orDash(strings.Join(s, ",")) }
