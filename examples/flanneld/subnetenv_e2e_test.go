package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/subnetenv"
)

// netConfTwo has room for two subnets: 10.244.1.0/24 and 10.244.2.0/24.
const netConfTwo = `{"Network": "10.244.0.0/22", "SubnetLen": 24, "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.2.0", "Backend": {"Type": "vxlan"}}`

// twoSubnets are netConfTwo's subnets.
var twoSubnets = []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.2.0/24")}

// putForeignLease writes a lease of another node's for subnet, as its
// agent would: attached to an etcd lease, naming its owner.
func (c *cluster) putForeignLease(subnet netip.Prefix, owner string, host byte) {
	c.t.Helper()
	ctx := context.Background()
	grant, err := c.admin.Grant(ctx, 3600)
	if err != nil {
		c.t.Fatal(err)
	}
	value := fmt.Sprintf(`{"PublicIP":"172.30.0.%d","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:%02x"},"WeftOwner":%q}`, host, host, owner)
	if _, err := c.admin.Put(ctx, keyOf(subnet), value, clientv3.WithLease(grant.ID)); err != nil {
		c.t.Fatal(err)
	}
}

// ownerOf returns the owner of the lease etcd holds for subnet, "" if
// there is none.
func (c *cluster) ownerOf(subnet netip.Prefix) (string, bool) {
	c.t.Helper()
	resp, err := c.admin.Get(context.Background(), keyOf(subnet))
	if err != nil {
		c.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	var a lease.Attrs
	if err := json.Unmarshal(resp.Kvs[0].Value, &a); err != nil {
		c.t.Fatalf("%s: %v", resp.Kvs[0].Key, err)
	}
	return a.Owner, true
}

// envNames returns the subnet d's subnet.env names, false if there is no
// file; a file that does not parse fails the test.
func envNames(t *testing.T, d *daemon) (netip.Prefix, bool) {
	t.Helper()
	f, err := subnetenv.Read(d.SubnetFile)
	if errors.Is(err, fs.ErrNotExist) {
		return netip.Prefix{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return f.Subnet.Masked(), true
}

// TestSubnetEnvAfterOfflineBootLosesLease is the observed failure: a node
// rebooted while etcd was down boots from its local state (subnet.env
// names its subnet, pods start); meanwhile its subnet was taken by
// another node and the network filled. When etcd answers the node gives
// the lease up, and subnet.env must no longer name the subnet: flannel's
// CNI plugin then refuses an ADD, instead of handing out an address of
// the other node's subnet. Once a subnet is free again the node takes
// it, subnet.env names it, and an ADD gets an address in it.
func TestSubnetEnvAfterOfflineBootLosesLease(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, netConfTwo)
	a := c.start(c.host(1))
	a.WaitReady()
	cni := newCNINode(t, a.Host, a.SubnetFile)
	held, _ := envNames(t, a)
	if addr, err := cni.add(); err != nil || !held.Contains(addr.Addr()) {
		t.Fatalf("ADD while the node holds %s: %v %v", held, addr, err)
	}
	store := stateOf(a)
	waitFor(t, 10*time.Second, "the local state to hold the lease", func() bool {
		st, err := store.Load()
		return err == nil && st.Lease.Key.IPv4 == held
	})

	// The node reboots; while it is away its lease lapses, another node
	// takes the subnet and a third the other one: the network is full.
	c.srv.Stop()
	if err := a.Stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "killed") {
		t.Fatal(err)
	}
	// A reboot takes the devices (cni0 with the pod's gateway address
	// among them) and subnet.env, on a tmpfs.
	ipOut(t, a.Host, "ip", "link", "del", "flannel.1")
	ipOut(t, a.Host, "ip", "link", "del", "cni0")
	if err := os.Remove(a.SubnetFile); err != nil {
		t.Fatal(err)
	}
	c.srv.Restart()
	if _, err := c.admin.Delete(context.Background(), keyOf(held)); err != nil {
		t.Fatal(err)
	}
	other := twoSubnets[0]
	if other == held {
		other = twoSubnets[1]
	}
	c.putForeignLease(held, "taker", 201)
	c.putForeignLease(other, "filler", 202)
	c.srv.Stop()

	a = c.start(a.Host, "--offline-after", "1s")
	a.WaitReady()
	if got, ok := envNames(t, a); !ok || got != held {
		t.Fatalf("offline boot: subnet.env names %v (%v); want %s from the local state", got, ok, held)
	}
	c.srv.Restart()
	waitFor(t, 30*time.Second, "the node to give up the local state's lease", func() bool {
		return strings.Contains(a.Out.String(), "gives this node no lease")
	})
	// The lease given up, the file must follow within a moment.
	var got netip.Prefix
	var present bool
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, present = envNames(t, a)
		if !present || got != held || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if present && got == held {
		owner, _ := c.ownerOf(held)
		t.Fatalf("the node gave up %s (held now by %q), and subnet.env still names it 5s later", held, owner)
	}
	if code, body := a.Readyz(); code == http.StatusOK {
		t.Errorf("/readyz 200 %q with no lease", body)
	}
	addr, err := cni.add()
	if err == nil {
		t.Fatalf("ADD with no lease held gave %s (the other node's subnet is %s)", addr, held)
	}
	t.Logf("flannel's CNI plugin with no lease held: %v", err)
	if !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("ADD failed, but not saying subnet.env is missing: %v", err)
	}

	// A subnet is free again: the node takes it, and pods start in it.
	if _, err := c.admin.Delete(context.Background(), keyOf(other)); err != nil {
		t.Fatal(err)
	}
	a.WaitReady()
	got, present = envNames(t, a)
	if !present || got != other {
		t.Fatalf("subnet.env names %v (%v) once a lease is held again; want %s", got, present, other)
	}
	if owner, ok := c.ownerOf(other); !ok || owner != a.Host.Name {
		t.Fatalf("etcd's %s is %q's (%v), and subnet.env names it", other, owner, ok)
	}
	if addr, err := cni.add(); err != nil || !other.Contains(addr.Addr()) {
		t.Fatalf("ADD with %s held again: %v %v", other, addr, err)
	}
}
