package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netConfMany has room for 255 subnets: a node that asks for no subnet in
// particular is unlikely to get the one it had.
const netConfMany = `{"Network": "10.244.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}`

// TestRestartBeforeLeaseKeepsSubnet: flanneld without a local state
// (--state-dir "") knows the subnet its pods use only from subnet.env
// (flannel's Previous). It is restarted while etcd is down (a crash, a
// rollout): the run that starts removes subnet.env before it holds a
// lease, and is restarted again before etcd answers. Meanwhile the node's
// key lapsed. Once etcd answers the node must ask for, and get, the free
// subnet its pods are on, as flanneld does, not a fresh one.
func TestRestartBeforeLeaseKeepsSubnet(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, netConfMany)
	a := c.start(c.host(1), "--state-dir=")
	a.WaitReady()
	held, ok := envNames(t, a)
	if !ok {
		t.Fatal("no subnet.env once ready")
	}
	// A crash while etcd is down: subnet.env stays, as it names the
	// node's subnet.
	c.srv.Stop()
	if err := a.Stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	// A run that starts while etcd is still down, and goes again before
	// it answers.
	b := c.start(a.Host, "--state-dir=")
	waitFor(t, 30*time.Second, "the starting run to act on subnet.env", func() bool {
		_, ok := envNames(t, b)
		return !ok || strings.Contains(b.Out.String(), "subnet.env")
	})
	_, present := envNames(t, b)
	if err := b.Stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	t.Logf("subnet.env present after the second run: %v", present)
	// The node's key lapsed meanwhile; etcd answers again.
	c.srv.Restart()
	if _, err := c.admin.Delete(context.Background(), keyOf(held)); err != nil {
		t.Fatal(err)
	}
	d := c.start(a.Host, "--state-dir=")
	d.WaitReady()
	if got, _ := envNames(t, d); got != held {
		t.Errorf("after the restarts the node runs on %s; its pods are on %s, which is free", got, held)
	}
}
