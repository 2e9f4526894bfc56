//go:build linux

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/localstate"
	"github.com/weftnet/weft/subnetenv"
)

const subnetsPrefix = "/coreos.com/network/subnets/"

// ownersIn returns the subnet keys c's store holds, and their owners.
func ownersIn(t *testing.T, c *clientv3.Client) map[lease.Key]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, subnetsPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[lease.Key]string{}
	for _, kv := range resp.Kvs {
		k, err := lease.ParseKey(strings.TrimPrefix(string(kv.Key), subnetsPrefix))
		if err != nil {
			t.Fatal(err)
		}
		var a lease.Attrs
		json.Unmarshal(kv.Value, &a)
		out[k] = a.Owner
	}
	return out
}

// TestNetworkRestoreHistories: random histories of etcd backups, restores
// and wipes, subnets given away by an operator or taken by a node joining
// in the window after a restore, and host restarts (booting from
// subnet.env, or from the local state alone), under three hosts running
// Networks. After every step: no host was given another lease unless the
// step gave its subnet to another owner; once settled, every host is
// ready on the one key etcd stores as its own, its device carries that
// subnet, its subnet.env names it, no two hosts or another owner hold one
// subnet, and traffic between two hosts flows. WEFT_SEED replays a
// history; WEFT_RESTORE_STEPS lengthens it.
func TestNetworkRestoreHistories(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("WEFT_SEED"), 10, 64); err == nil {
		seed = s
	}
	steps := 8
	if n, err := strconv.Atoi(os.Getenv("WEFT_RESTORE_STEPS")); err == nil {
		steps = n
	}
	t.Logf("seed %d (set WEFT_SEED to replay)", seed)
	rnd := rand.New(rand.NewPCG(seed, 29))

	srv := etcdtest.Start(t)
	admin := srv.Client(t)
	const config = `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`
	if _, err := admin.Put(context.Background(), "/coreos.com/network/config", config); err != nil {
		t.Fatal(err)
	}
	seg := netnstest.NewSegment(t, 3)
	dir := t.TempDir()
	agents := make([]*restoreAgent, len(seg.Hosts))
	stores := make([]*localstate.Store, len(seg.Hosts))
	// Each host keeps one way of restarting, as a node keeps its
	// configuration: a host that ran without its local state for a while
	// would restart from a file saved before its last move.
	fromEnv := make([]bool, len(seg.Hosts))
	for i := range fromEnv {
		fromEnv[i] = rnd.IntN(2) == 0
	}
	for i, h := range seg.Hosts {
		stores[i] = localstate.NewStore(filepath.Join(dir, h.Name), localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name}, 0)
		if fromEnv[i] {
			agents[i] = startRestoreAgent(t, srv, h, filepath.Join(dir, h.Name+".env"), nil)
		} else {
			agents[i] = startRestoreAgent(t, srv, h, filepath.Join(dir, h.Name+".env"), stores[i])
		}
	}
	restart := func(i int) string {
		agents[i].stop()
		// A nil *localstate.Store would be a non-nil StateStore.
		how := "from subnet.env"
		if fromEnv[i] {
			agents[i] = startRestoreAgent(t, srv, agents[i].host, agents[i].env, nil)
		} else {
			agents[i] = startRestoreAgent(t, srv, agents[i].host, agents[i].env, stores[i])
			how = "from its local state"
		}
		return fmt.Sprintf("restart %s %s", agents[i].host.Name, how)
	}
	foreign := 0
	give := func(c *clientv3.Client, k lease.Key, who string) {
		foreign++
		v := fmt.Sprintf(`{"PublicIP":"172.31.0.%d","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:01:%02x"},"WeftOwner":"%s-%d"}`, foreign, foreign, who, foreign)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Put(ctx, subnetsPrefix+k.String(), v); err != nil {
			t.Fatal(err)
		}
	}
	takenIn := func(stored map[lease.Key]string) map[string]bool {
		taken := map[string]bool{}
		for _, a := range agents {
			for k, owner := range stored {
				if owner != a.host.Name && k.Overlaps(a.current().Key) {
					taken[a.host.Name] = true
				}
			}
		}
		return taken
	}
	var log []string
	check := func() []string {
		var bad []string
		stored := ownersIn(t, admin)
		for i, a := range agents {
			k := a.current().Key
			if ok, why := a.net.Ready(); !ok {
				bad = append(bad, fmt.Sprintf("%s not ready: %s", a.host.Name, why))
			}
			if l, held := a.net.Lease(); !held || l.Key != k {
				bad = append(bad, fmt.Sprintf("%s holds %v, announced %v", a.host.Name, l.Key, k))
			}
			var own []lease.Key
			for sk, owner := range stored {
				switch {
				case owner == a.host.Name:
					own = append(own, sk)
				case sk.Overlaps(k):
					bad = append(bad, fmt.Sprintf("%s runs on %v, and %s holds %v", a.host.Name, k, owner, sk))
				}
			}
			if len(own) != 1 || own[0] != k {
				bad = append(bad, fmt.Sprintf("%s runs on %v; etcd stores %v as its", a.host.Name, k, own))
			}
			if !deviceHolds(a.simHost, k) {
				bad = append(bad, fmt.Sprintf("%s's device does not carry %v", a.host.Name, k))
			}
			if f, err := subnetenv.Read(a.env); err != nil || f.Subnet.Masked() != k.IPv4 {
				bad = append(bad, fmt.Sprintf("%s runs on %v; its subnet.env names %v (%v)", a.host.Name, k, f.Subnet, err))
			}
			for _, b := range agents[i+1:] {
				if k.Overlaps(b.current().Key) {
					bad = append(bad, fmt.Sprintf("%s and %s both run on %v", a.host.Name, b.host.Name, k))
				}
			}
		}
		return bad
	}
	settle := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			bad := check()
			if len(bad) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not settled after 30 s: %v\nhistory: %q", what, bad, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	all := func() []*simHost {
		var out []*simHost
		for _, a := range agents {
			out = append(out, a.simHost)
		}
		return out
	}
	waitReady(t, all())
	settle("start")
	var backups []etcdtest.Backup
	for s := range steps {
		type mark struct {
			a    *restoreAgent
			seen int
			key  lease.Key
		}
		marks := make([]mark, len(agents))
		for i, a := range agents {
			marks[i] = mark{a, len(a.leaseHistory()), a.current().Key}
		}
		var taken map[string]bool
		switch r := rnd.IntN(100); {
		case r < 20 || len(backups) == 0:
			kind := etcdtest.ColdCopy
			if srv.CanBackup(etcdtest.EtcdctlSnapshot) && rnd.IntN(2) == 0 {
				kind = etcdtest.EtcdctlSnapshot
			}
			backups = append(backups, srv.Backup(kind))
			log = append(log, fmt.Sprintf("backup %d (%v)", len(backups), kind))
		case r < 35:
			a := agents[rnd.IntN(len(agents))]
			give(admin, a.current().Key, "taker")
			taken = map[string]bool{a.host.Name: true}
			log = append(log, fmt.Sprintf("%v given away from %s", a.current().Key, a.host.Name))
		case r < 50:
			log = append(log, restart(rnd.IntN(len(agents))))
		default:
			b := -1
			if rnd.IntN(4) != 0 {
				b = rnd.IntN(len(backups))
			}
			down := rnd.IntN(len(agents) + 1) // a host down through it, or none
			if down < len(agents) {
				agents[down].stop()
			}
			victim := agents[rnd.IntN(len(agents))]
			joins := rnd.IntN(3) == 0
			setup := func(endpoint string) {
				c := etcdtest.NewClient(t, endpoint)
				if b < 0 {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if _, err := c.Put(ctx, "/coreos.com/network/config", config); err != nil {
						t.Fatal(err)
					}
				}
				if joins {
					give(c, victim.current().Key, "joiner")
				}
				taken = takenIn(ownersIn(t, c))
			}
			what := "wipe"
			if b < 0 {
				srv.WipeWith(setup)
			} else {
				srv.Restore(backups[b], setup)
				what = fmt.Sprintf("restore backup %d", b+1)
			}
			if down < len(agents) {
				what += ", " + restart(down) + " after it"
				marks[down].a = agents[down]
				marks[down].seen = 0
			}
			if joins {
				what += fmt.Sprintf(", a joiner took %s's %v", victim.host.Name, victim.current().Key)
			}
			log = append(log, what)
		}
		waitReady(t, all())
		settle(fmt.Sprintf("step %d (%s)", s, log[len(log)-1]))
		for _, m := range marks {
			for _, l := range m.a.leaseHistory()[m.seen:] {
				if l.Key != m.key && !taken[m.a.host.Name] {
					t.Fatalf("step %d (%s): %s was given %v while %v was free\nhistory: %q", s, log[len(log)-1], m.a.host.Name, l.Key, m.key, log)
				}
			}
		}
		from, to := agents[rnd.IntN(len(agents))], agents[rnd.IntN(len(agents))]
		if from != to {
			if err := reach(t, from.simHost, to.simHost); err != nil {
				t.Fatalf("step %d (%s): %s -> %s: %v", s, log[len(log)-1], from.host.Name, to.host.Name, err)
			}
		}
	}
	t.Logf("history: %q", log)
}
