package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/localstate"
)

// stateOf is the local state flanneld keeps for d in etcd mode.
func stateOf(d *daemon) *localstate.Store {
	return localstate.NewStore(daemontest.StateDir(d.SubnetFile), localstate.Identity{Network: "etcd /coreos.com/network", Node: d.Host.Name}, 0)
}

// TestOfflineReboot: three hosts run with traffic flowing. etcd stops,
// and host 1 reboots: the daemon is killed, and its device (with every
// route, neighbour and FDB entry) and subnet.env (on /run, a tmpfs) are
// gone; its state directory stays. Started again with etcd still down,
// it writes subnet.env for the same subnet, is ready with /readyz saying
// it runs from its local state, and traffic flows between it and both
// others. When etcd is back it runs on etcd again with no etcd write and
// no change in its kernel.
func TestOfflineReboot(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, netConf16)
	a, b := c.startTwo()
	third := c.start(c.host(3))
	third.WaitReady()
	for _, d := range []*daemon{a, b, third} {
		d.WaitPeers(2)
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}, {a, third}, {third, a}})
	before := a.Env()
	store := stateOf(a)
	testutil.WaitFor(t, 10*time.Second, "host 1's local state to hold both peers", func() bool {
		st, err := store.Load()
		return err == nil && len(st.Peers) == 2 && st.Lease.Key.IPv4 == before.Subnet.Masked()
	})
	resp, err := c.admin.Get(context.Background(), "/none")
	if err != nil {
		t.Fatal(err)
	}
	revision := resp.Header.Revision

	c.srv.Stop()
	if err := a.Stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	ipOut(t, a.Host, "ip", "link", "del", "flannel.1")
	if err := os.Remove(a.SubnetFile); err != nil {
		t.Fatal(err)
	}
	booted := time.Now()
	a = c.start(a.Host, "--offline-after", "1s")
	a.WaitReady()
	a.WaitPeers(2)
	t.Logf("rebooted with etcd down: ready with both peers programmed %v after start (--offline-after 1s)", time.Since(booted).Round(time.Millisecond))
	if code, body := a.Readyz(); code != http.StatusOK || !strings.Contains(body, "running from the local state since") {
		t.Errorf("/readyz %d %q; want 200 saying it runs from the local state", code, body)
	}
	if _, body := a.Get("/metrics"); !strings.Contains(body, "weft_local_state_in_use 1") {
		t.Errorf("weft_local_state_in_use is not 1:\n%s", grepLines(body, "weft_local_state"))
	}
	if got := a.Env(); got.Subnet != before.Subnet || got.MTU != before.MTU {
		t.Errorf("subnet.env after the offline boot: %+v; before the reboot %+v", got, before)
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}, {a, third}, {third, a}})

	changes := a.Host.WatchKernel(t)
	c.srv.Restart()
	testutil.WaitFor(t, 20*time.Second, "host 1 to run on etcd again", func() bool {
		code, body := a.Readyz()
		return code == http.StatusOK && strings.TrimSpace(body) == "ready"
	})
	time.Sleep(3 * time.Second) // a resync (2s) after the listing
	if seen := changes(); len(seen) > 0 {
		t.Errorf("reconnecting changed host 1's kernel %d times: %v", len(seen), seen)
	}
	resp, err = c.admin.Get(context.Background(), "/none")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != revision {
		t.Errorf("etcd revision %d after the reconnection, %d before the reboot: needless writes", resp.Header.Revision, revision)
	}
	if _, body := a.Get("/metrics"); !strings.Contains(body, "weft_local_state_in_use 0") {
		t.Errorf("weft_local_state_in_use is not 0 once back:\n%s", grepLines(body, "weft_local_state"))
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})
}

// TestOfflineBootWithCredentials (issue 29, item 4): with
// --etcd-username and --etcd-password, as without them, a host rebooted
// while etcd is down boots from its local state instead of exiting: it
// writes subnet.env for its subnet, is ready from its local state, and
// traffic flows to its peer. When etcd is back it logs in and runs on
// etcd again. A host given a wrong password does not exit either: it
// waits, and /readyz says etcd refused its user.
func TestOfflineBootWithCredentials(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, netConf16)
	etcdtest.EnableAuth(t, c.admin, "flannel", "s3cret", "/coreos.com/network/")
	c.admin = etcdtest.NewRootClientIn(t, c.host(0).Do, c.srv.Endpoint())
	creds := []string{"--etcd-username", "flannel", "--etcd-password", "s3cret"}
	a, b := c.start(c.host(1), creds...), c.start(c.host(2), creds...)
	for _, d := range []*daemon{a, b} {
		d.WaitReady()
		d.WaitPeers(1)
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})
	before := a.Env()
	store := stateOf(a)
	testutil.WaitFor(t, 10*time.Second, "host 1's local state to hold its peer", func() bool {
		st, err := store.Load()
		return err == nil && len(st.Peers) == 1 && st.Lease.Key.IPv4 == before.Subnet.Masked()
	})

	c.srv.Stop()
	if err := a.Stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	ipOut(t, a.Host, "ip", "link", "del", "flannel.1")
	if err := os.Remove(a.SubnetFile); err != nil {
		t.Fatal(err)
	}
	booted := time.Now()
	a = c.start(a.Host, append(creds, "--offline-after", "1s")...)
	testutil.WaitFor(t, 30*time.Second, "host 1 ready from its local state, with etcd down", func() bool {
		if exited, err := a.Exited(); exited {
			t.Fatalf("host 1 exited with etcd down and credentials given: %v\n%s", err, a.Out)
		}
		code, body := a.Readyz()
		return code == http.StatusOK && strings.Contains(body, "running from the local state since")
	})
	a.WaitPeers(1)
	t.Logf("rebooted with etcd down and credentials: ready with its peer programmed %v after start (--offline-after 1s)", time.Since(booted).Round(time.Millisecond))
	if got := a.Env(); got.Subnet != before.Subnet {
		t.Errorf("subnet.env after the offline boot: %+v; before the reboot %+v", got, before)
	}
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})

	c.srv.Restart()
	testutil.WaitFor(t, 30*time.Second, "host 1 to log in and run on etcd again", func() bool {
		code, body := a.Readyz()
		return code == http.StatusOK && strings.TrimSpace(body) == "ready"
	})
	reachPairs(t, [][2]*daemon{{a, b}, {b, a}})

	wrong := c.start(c.host(3), "--etcd-username", "flannel", "--etcd-password", "wrong")
	var last string
	testutil.WaitFor(t, 30*time.Second, "host 3's /readyz to say etcd refused its user", func() bool {
		if exited, err := wrong.Exited(); exited {
			t.Fatalf("host 3 exited with a wrong password: %v\n%s", err, wrong.Out)
		}
		code, body := wrong.Readyz()
		last = body
		return code == http.StatusServiceUnavailable && strings.Contains(body, "authentication failed") && strings.Contains(body, `"flannel"`)
	})
	t.Logf("host 3's /readyz with a wrong password: %s", last)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestUnderlayChangeDaemon: host 1's address changes under a running
// daemon (the old one removed, a new one added, as a DHCP client does):
// it moves its device and republishes its lease on the same key, and host
// 2 reaches it at the new address with no restart. Host 2's address was
// given with --public-ip: when it vanishes, /readyz says so with a 503,
// the daemon keeps running, and it is ready again once the address is
// back.
func TestUnderlayChangeDaemon(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, netConf16)
	a := c.start(c.host(1))
	// Host 2's public address is a second one, so that its health
	// server, on the first, stays reachable when it goes.
	const second = "172.30.0.203/24"
	ipOut(t, c.host(2), "ip", "addr", "add", second, "dev", "eth0")
	b := c.start(c.host(2), "--public-ip", strings.TrimSuffix(second, "/24"))
	for _, d := range []*daemon{a, b} {
		d.WaitReady()
		d.WaitPeers(1)
	}
	reachPairs(t, [][2]*daemon{{b, a}})
	key := keyOf(a.Env().Subnet.Masked())
	before, err := c.admin.Get(context.Background(), key)
	if err != nil || len(before.Kvs) != 1 {
		t.Fatalf("host 1's key: %v %v", before, err)
	}

	changed := time.Now()
	ipOut(t, a.Host, "ip", "addr", "del", a.Host.Addr.String(), "dev", "eth0")
	ipOut(t, a.Host, "ip", "addr", "add", "172.30.0.201/24", "dev", "eth0")
	// Its connection to etcd went with the old address: the client's
	// pings find it dead and it dials again, within 13s.
	testutil.WaitFor(t, 30*time.Second, "host 1's key to publish its new address", func() bool {
		resp, err := c.admin.Get(context.Background(), key)
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), `"PublicIP":"172.30.0.201"`) &&
			resp.Kvs[0].CreateRevision == before.Kvs[0].CreateRevision
	})
	t.Logf("host 1's new address published %v after the change (etcd reached over the changed interface)", time.Since(changed).Round(time.Millisecond))
	reachPairs(t, [][2]*daemon{{b, a}, {a, b}})
	if !strings.Contains(a.Out.String(), "the underlay address changed") || !strings.Contains(a.Out.String(), "republished this node's lease") {
		t.Errorf("host 1 did not log the move:\n%s", a.Out)
	}

	ipOut(t, b.Host, "ip", "addr", "del", second, "dev", "eth0")
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host 2's last /readyz: %s", last)
		}
	})
	testutil.WaitFor(t, 10*time.Second, "host 2 to say it waits for its --public-ip", func() bool {
		code, body := b.Readyz()
		last = fmt.Sprint(code, " ", body)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "is on no interface now")
	})
	if b.Cmd.ProcessState != nil {
		t.Fatalf("host 2's daemon exited: %v", b.Cmd.ProcessState)
	}
	ipOut(t, b.Host, "ip", "addr", "add", second, "dev", "eth0")
	b.WaitReady()
	reachPairs(t, [][2]*daemon{{b, a}})
}
