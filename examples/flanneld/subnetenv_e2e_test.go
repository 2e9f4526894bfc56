package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/testutil"
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

	a = c.start(a.Host, "--offline-after", "1s", "--ip-blackhole-route")
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
	testutil.Eventually(5*time.Second, func() bool {
		got, present = envNames(t, a)
		return !present || got != held
	})
	if present && got == held {
		owner, _ := c.ownerOf(held)
		t.Fatalf("the node gave up %s (held now by %q), and subnet.env still names it 5s later", held, owner)
	}
	if code, body := a.Readyz(); code == http.StatusOK || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz %d %q with no lease", code, body)
	} else {
		t.Logf("/readyz with no lease: %d %s", code, body)
	}
	// Nor does a blackhole route for it stay.
	if routes := ipOut(t, a.Host, "ip", "route", "show", "proto", "158"); strings.Contains(routes, held.String()) {
		t.Errorf("a blackhole route for the subnet given up stays: %s", routes)
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
	if routes := ipOut(t, a.Host, "ip", "route", "show", "proto", "158"); !strings.Contains(routes, other.String()) || strings.Contains(routes, held.String()) {
		t.Errorf("blackhole routes with %s held: %s", other, routes)
	}
}

// historyConfigs are the network configs a history switches between: the
// second leaves out every subnet of the first.
var historyConfigs = []struct {
	conf    string
	network netip.Prefix
	subnets []netip.Prefix
}{
	{netConfTwo, netip.MustParsePrefix("10.244.0.0/22"), twoSubnets},
	{`{"Network": "10.245.0.0/22", "SubnetLen": 24, "SubnetMin": "10.245.1.0", "SubnetMax": "10.245.2.0", "Backend": {"Type": "vxlan"}}`,
		netip.MustParsePrefix("10.245.0.0/22"), []netip.Prefix{netip.MustParsePrefix("10.245.1.0/24"), netip.MustParsePrefix("10.245.2.0/24")}},
}

// owners returns the owner of every lease in etcd, by subnet.
func (c *cluster) owners() map[netip.Prefix]string {
	c.t.Helper()
	resp, err := c.admin.Get(context.Background(), "/coreos.com/network/subnets/", clientv3.WithPrefix())
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[netip.Prefix]string{}
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), "/coreos.com/network/subnets/")
		p, err := netip.ParsePrefix(strings.Replace(k, "-", "/", 1))
		if err != nil {
			c.t.Fatalf("key %s: %v", kv.Key, err)
		}
		var a lease.Attrs
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			c.t.Fatalf("%s: %v", kv.Key, err)
		}
		out[p] = a.Owner
	}
	return out
}

// TestSubnetEnvNamesOnlyHeldSubnet checks, after every step of a random
// history against a real etcd and the real daemon, that subnet.env, read
// from disk, names only a subnet that etcd says the node holds (while
// etcd is down: held when it went down, which is what it still holds),
// inside the network in force; and, while a subnet is to be had, that the
// node holds one and the file names it. The steps: the node's subnet
// taken by another node, the network filled, a subnet freed, etcd down
// and up, the network config changed to one that leaves the node's
// subnet out, and a reboot (from the local state when etcd is down).
// WEFT_HISTORY_SEED replays a history; WEFT_HISTORY_STEPS sets its length.
func TestSubnetEnvNamesOnlyHeldSubnet(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	if s := os.Getenv("WEFT_HISTORY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	steps := 16
	if s := os.Getenv("WEFT_HISTORY_STEPS"); s != "" {
		var err error
		if steps, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("WEFT_HISTORY_SEED=%d WEFT_HISTORY_STEPS=%d", seed, steps)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	conf := 0
	c := newCluster(t, 1, historyConfigs[conf].conf)
	a := c.start(c.host(1), "--offline-after", "1s")
	node := a.Host.Name
	a.WaitReady()
	up := true
	var frozen map[netip.Prefix]string // etcd's leases when it went down
	foreign := byte(200)

	check := func(step string) {
		t.Helper()
		cfg := historyConfigs[conf]
		if !up {
			// Nothing changes in a stopped etcd: what it held then is
			// what the node holds. The daemon may be booting offline.
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				if s, ok := envNames(t, a); ok && frozen[s] != node {
					t.Fatalf("after %s (etcd down): subnet.env names %s, which etcd gives %q", step, s, frozen[s])
				}
				time.Sleep(50 * time.Millisecond)
			}
			return
		}
		var last string
		if !testutil.Eventually(40*time.Second, func() bool {
			owners := c.owners()
			s, present := envNames(t, a)
			available := false
			for _, p := range cfg.subnets {
				if o, taken := owners[p]; !taken || o == node {
					available = true
				}
			}
			safe := !present || owners[s] == node && cfg.network.Contains(s.Addr())
			live := present || !available
			last = fmt.Sprintf("subnet.env names %v (present %v); etcd: %v; network %s", s, present, owners, cfg.network)
			return safe && live
		}) {
			t.Fatalf("after %s, 40s on: %s", step, last)
		}
	}
	check("start")

	for i := range steps {
		var step string
		switch k := rng.IntN(7); {
		case !up && k < 5:
			step = "etcd up"
			c.srv.Restart()
			up = true
		case !up || k == 5:
			step = "reboot"
			if err := a.Stop(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "killed") {
				t.Fatal(err)
			}
			exec.Command("ip", "-n", a.Host.Name, "link", "del", "flannel.1").Run()
			if err := os.Remove(a.SubnetFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			a = c.start(a.Host, "--offline-after", "1s")
		case k == 0:
			step = "etcd down"
			frozen = c.owners()
			c.srv.Stop()
			up = false
		case k == 1:
			step = "node's subnet taken"
			for p, o := range c.owners() {
				if o == node {
					c.putForeignLease(p, fmt.Sprintf("taker-%d", foreign), foreign)
					foreign++
				}
			}
		case k == 2:
			step = "network filled"
			owners := c.owners()
			for _, p := range historyConfigs[conf].subnets {
				if _, taken := owners[p]; !taken {
					c.putForeignLease(p, fmt.Sprintf("filler-%d", foreign), foreign)
					foreign++
				}
			}
		case k == 3:
			step = "network config changed"
			conf = 1 - conf
			c.putConfig(historyConfigs[conf].conf)
		default:
			step = "a subnet freed"
			for p, o := range c.owners() {
				if o != node {
					if _, err := c.admin.Delete(context.Background(), keyOf(p)); err != nil {
						t.Fatal(err)
					}
					break
				}
			}
		}
		check(fmt.Sprintf("step %d (%s)", i, step))
		s, present := envNames(t, a)
		t.Logf("step %d: %s; subnet.env: %v %v", i, step, s, present)
	}
}
