package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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
