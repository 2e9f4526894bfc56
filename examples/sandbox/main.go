// Command sandbox shows weft working on one machine, in one command:
//
//	sudo go run ./examples/sandbox
//
// It starts an embedded etcd, builds simulated hosts in network namespaces
// on a shared L2 segment, gives each host pod namespaces on a bridge, runs
// weft's agent loop (agent.Network with lease/etcd) on every host, waits
// for the overlay to converge (every host ready, every host's route to
// every other's subnet programmed, and every bridge and veth it made
// operationally up), and proves pod-to-pod traffic across
// hosts with real packets: a pod pair whose first datagram got no echo is
// reported, with the slowest first exchange. Then it prints what it built
// and tears it all down.
//
// Flags: --hosts N (default 3), --pods N per host (default 1), --keep to
// leave everything up for inspection with ip and bridge until Ctrl-C.
//
// Reading it to copy: the agent on each host is the first loop of run in
// run.go, and it uses weft's public API alone (lease/etcd and vxlan), as
// examples/embed does. Everything else here stands in for a cluster of
// machines, and comes from the repository's internal test harnesses
// (internal/etcdtest for the etcd server, internal/netnstest for hosts,
// segments and pods, internal/linkstate for the wait on the pods' links). They are internal on purpose: they are how weft's
// tests build simulated hosts, not something an agent runs, and keeping
// them out of the API lets them change with the tests. A real agent has
// real hosts and an etcd cluster in their place.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	opts := options{}
	flag.IntVar(&opts.hosts, "hosts", 3, "number of simulated hosts (2 to 200)")
	flag.IntVar(&opts.pods, "pods", 1, "pod namespaces per host (1 to 20)")
	flag.BoolVar(&opts.keep, "keep", false, "leave everything up for inspection until Ctrl-C")
	flag.BoolVar(&opts.verbose, "v", false, "show the agents' logs")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "sandbox: needs root to create network namespaces; run it with sudo")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts.out = os.Stdout
	opts.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if opts.verbose {
		opts.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	env := newEnv()
	_, err := run(ctx, env, opts)
	env.teardown()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

type options struct {
	hosts, pods int
	keep        bool
	verbose     bool
	out         io.Writer
	log         *slog.Logger
	timeout     time.Duration
	// diagnose records, for a pod pair whose first datagram got no echo,
	// the kernel's view of the path (see exchange.diag).
	diagnose bool
}
