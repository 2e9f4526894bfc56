package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestSandbox runs the README's first command in-process: three hosts, two
// pods each, every pod pair across hosts must exchange packets, and
// everything the sandbox made must be gone afterwards.
func TestSandbox(t *testing.T) {
	netnstest.RequirePrivileged(t)
	var out bytes.Buffer
	e := newEnv()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := run(ctx, e, options{hosts: 3, pods: 2, out: &out, log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	made := map[string]bool{}
	for ns := range namespaces(t) {
		if strings.Contains(ns, fmt.Sprintf("-%d-", os.Getpid())) {
			made[ns] = true
		}
	}
	e.teardown()
	if err != nil {
		t.Fatalf("sandbox: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "24 of 24 pod pairs reached each other over VXLAN") {
		t.Errorf("output:\n%s", out.String())
	}
	// Other packages' tests make namespaces too; this process's carry its
	// PID.
	mine := fmt.Sprintf("-%d-", os.Getpid())
	if len(made) == 0 {
		t.Fatal("the sandbox made no namespaces")
	}
	for ns := range namespaces(t) {
		if made[ns] && strings.Contains(ns, mine) {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}

func namespaces(t *testing.T) map[string]bool {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			m[f[0]] = true
		}
	}
	return m
}

// TestSandboxFirstExchanges repeats the sandbox's bring-up 50 times: after
// it says converged, the first datagram of every pod pair must come back.
// Hosts that start together each list the leases before the others have
// written theirs and learn of them over the watch; a host ready on what it
// had listed has no route to the others yet, and drops the first datagram
// (IP_INNOROUTES, an ICMP unreachable back). The sandbox waits for every
// host to program every other's subnet.
//
// Each first datagram is sent once the sandbox says converged, which
// includes every bridge and veth it made being operationally up: before
// the kernel's link-watch work has run for a new bridge (up to a second
// late on a busy machine), its transmit queue drops what is sent, and the
// first datagram waits for an ARP retry or is lost. The test counts the
// first datagrams lost, which must be none, and the first echoes slower
// than half a second, which it reports (no timed assertion).
// WEFT_SANDBOX_RUNS sets the number of bring-ups.
func TestSandboxFirstExchanges(t *testing.T) {
	netnstest.RequirePrivileged(t)
	runs := 50
	if s := os.Getenv("WEFT_SANDBOX_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		runs = n
	}
	var slowest time.Duration
	lost, slow, pairs := 0, 0, 0
	defer func() {
		t.Logf("%d bring-ups, %d pod pairs: %d first datagrams lost, %d first echoes after more than 0.5s; slowest first exchange %v", runs, pairs, lost, slow, slowest)
	}()
	for i := range runs {
		var out bytes.Buffer
		e := newEnv()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rep, err := run(ctx, e, options{hosts: 3, pods: 1, out: &out, log: slog.New(slog.NewTextHandler(io.Discard, nil)), diagnose: true})
		e.teardown()
		cancel()
		if err != nil {
			t.Fatalf("bring-up %d: %v\n%s", i+1, err, out.String())
		}
		if len(rep.exchanges) != 6 {
			t.Fatalf("bring-up %d: %d exchanges, want 6\n%s", i+1, len(rep.exchanges), out.String())
		}
		pairs += len(rep.exchanges)
		for _, x := range rep.exchanges {
			if x.Attempts == 1 && x.err == nil && x.First > 500*time.Millisecond {
				slow++
			}
		}
		for _, x := range rep.retried() {
			lost++
			t.Errorf("bring-up %d: %s to %s needed %d attempts after convergence; the first: %v\nthe path just after:\n%s", i+1, x.from.name, x.to.name, x.Attempts, x.FirstErr, x.diag)
		}
		if w, _ := rep.slowestFirst(); w.First > slowest {
			slowest = w.First
		}
		// Slow is not lost: under heavy load a first echo can take a
		// second (a neighbour resolution retried). Said, not failed.
		if w, _ := rep.slowestFirst(); w.First > 200*time.Millisecond && w.Attempts == 1 {
			t.Logf("bring-up %d: %s to %s: first echo after %v", i+1, w.from.name, w.to.name, w.First)
		}
		if !strings.Contains(out.String(), "slowest first exchange: ") {
			t.Fatalf("bring-up %d: the output does not say the slowest first exchange:\n%s", i+1, out.String())
		}
	}
}
