package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os/exec"
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
	err := run(ctx, e, options{hosts: 3, pods: 2, out: &out, log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	made := namespaces(t)
	e.teardown()
	if err != nil {
		t.Fatalf("sandbox: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "24 of 24 pod pairs reached each other over VXLAN") {
		t.Errorf("output:\n%s", out.String())
	}
	left := namespaces(t)
	for ns := range made {
		if left[ns] && strings.HasPrefix(ns, "weft-") {
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
