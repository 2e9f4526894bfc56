package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/subnetenv"
)

// A notice is which path of a node first finds that the store forgot.
type notice int

const (
	noticeNatural notice = iota // the real timing decides
	noticeKeep                  // Keep (its renewal, or its watch ending) before the history check
	noticeRenewal               // Keep's renewal alone: the watch resumes silently, the history check waits
	noticeRestart               // the node was down, and its first listing finds it
)

var noticeNames = [...]string{"natural", "keep", "renewal", "restart"}

// runner is a node's daemon as agent.Network is, reduced to its lease:
// acquire (asking for the subnet it runs on), keep, acquire again after a
// loss. running is the subnet its datapath carries, from its first lease
// until it is given another, across losses and restarts (a restart boots
// from local state); it writes subnet.env, as flanneld does, at each
// lease.
type runner struct {
	name string
	i    int // attrsFor index
	env  string

	mu      sync.Mutex
	running lease.Key
	moves   []string // every change of running, for the report
	m       *Manager
	gate    *orderGate
	stop    context.CancelFunc
	done    chan struct{}
}

func (r *runner) current() lease.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

func (r *runner) onLease(l lease.Lease) error {
	r.mu.Lock()
	if r.running.IsValid() && r.running != l.Key {
		r.moves = append(r.moves, fmt.Sprintf("%v -> %v", r.running, l.Key))
	}
	r.running = l.Key
	r.mu.Unlock()
	return subnetenv.Write(r.env, subnetenv.File{
		Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: l.Key.IPv4, MTU: 1450, IPMasq: true,
	})
}

// restoreHistory drives random backups, restores, wipes and moves of
// etcd under running nodes.
type restoreHistory struct {
	t       *testing.T
	e       *env
	rnd     *rand.Rand
	nodes   []*runner
	backups []etcdtest.Backup
	foreign int // index of the next taker or joiner
	log     []string
}

func (h *restoreHistory) manager(name string) *Manager {
	return h.e.managerWith(name, func(o *Options) {
		// Renewals every 2 s, so that a renewal can be what finds
		// the store forgetful; a restored lease lives 10 s.
		o.TTL, o.RenewMargin = 10*time.Second, 8*time.Second
		o.SettleTime = 2 * time.Second
	})
}

// start runs r's daemon with a new Manager, gated if gate is set.
func (h *restoreHistory) start(r *runner, gate *orderGate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m = h.manager(r.name)
	r.gate = gate
	if gate != nil {
		r.m.history.setGate(gate)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop, r.done = cancel, make(chan struct{})
	m, prev, done := r.m, r.running, r.done
	go func() {
		defer close(done)
		req := lease.AcquireRequest{Attrs: attrsFor(r.i), Previous: prev}
		for {
			l, err := m.Acquire(ctx, req)
			if err != nil {
				return
			}
			if err := r.onLease(l); err != nil {
				h.t.Errorf("%s: %v", r.name, err)
			}
			if err := m.Keep(ctx, l); !errors.Is(err, lease.ErrLeaseLost) {
				return
			}
			req.Previous = l.Key
		}
	}()
}

// kill stops r's daemon; its key stays, and its datapath keeps running.
func (h *restoreHistory) kill(r *runner) {
	r.mu.Lock()
	stop, done, m := r.stop, r.done, r.m
	r.mu.Unlock()
	stop()
	<-done
	m.Close()
}

// stored returns the subnet keys and their owners.
func storedOwners(t *testing.T, c *clientv3.Client) map[lease.Key]string {
	t.Helper()
	resp, err := c.Get(ctxFor(t, 10*time.Second), testPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[lease.Key]string{}
	for _, kv := range resp.Kvs {
		k, err := lease.ParseKey(strings.TrimPrefix(string(kv.Key), testPrefix+"/subnets/"))
		if err != nil {
			t.Fatal(err)
		}
		var a lease.Attrs
		json.Unmarshal(kv.Value, &a)
		out[k] = a.Owner
	}
	return out
}

// takenFrom reports, for each node, whether a key of another owner
// holds part of the subnet it runs on.
func (h *restoreHistory) takenFrom(stored map[lease.Key]string) map[string]bool {
	taken := map[string]bool{}
	for _, r := range h.nodes {
		for k, owner := range stored {
			if owner != r.name && k.Overlaps(r.current()) {
				taken[r.name] = true
			}
		}
	}
	return taken
}

// foreignKey writes, through c, a reservation for a new owner that is
// no node here (an operator's, or a node that joined in the window).
func (h *restoreHistory) foreignKey(c *clientv3.Client, k lease.Key, what string) {
	h.foreign++
	a := attrsFor(100 + h.foreign)
	a.Owner = fmt.Sprintf("%s-%d", what, h.foreign)
	raw, _ := json.Marshal(a)
	if _, err := c.Put(ctxFor(h.t, 10*time.Second), subnetPath(k), string(raw)); err != nil {
		h.t.Fatal(err)
	}
}

// freeKey returns a subnet no key holds.
func (h *restoreHistory) freeKey(stored map[lease.Key]string) lease.Key {
	for {
		k := mustKey(h.t, fmt.Sprintf("10.244.%d.0-24", 1+h.rnd.IntN(254)))
		free := true
		for s := range stored {
			free = free && !s.Overlaps(k)
		}
		if free {
			return k
		}
	}
}

// step takes one random step and returns, per node, whether the step
// took its subnet from it (then, and only then, it may move).
func (h *restoreHistory) step() map[string]bool {
	switch r := h.rnd.IntN(100); {
	case r < 25 || len(h.backups) == 0:
		var kinds []etcdtest.BackupKind
		for _, k := range []etcdtest.BackupKind{etcdtest.ColdCopy, etcdtest.EtcdctlSnapshot, etcdtest.ClientSnapshot} {
			if h.e.server.CanBackup(k) {
				kinds = append(kinds, k)
			}
		}
		b := h.e.server.Backup(kinds[h.rnd.IntN(len(kinds))])
		h.backups = append(h.backups, b)
		h.log = append(h.log, fmt.Sprintf("backup %d (%v)", len(h.backups), b.Kind))
		return nil
	case r < 40:
		// An operator gives a node's subnet to another owner: it
		// must move.
		n := h.nodes[h.rnd.IntN(len(h.nodes))]
		h.foreignKey(h.e.admin, n.current(), "taker")
		h.log = append(h.log, fmt.Sprintf("%v given away from %s", n.current(), n.name))
		return map[string]bool{n.name: true}
	case r < 50:
		n := h.nodes[h.rnd.IntN(len(h.nodes))]
		h.kill(n)
		h.start(n, nil)
		h.log = append(h.log, "restart "+n.name)
		return nil
	}
	// Restored from a random backup, or wiped; each node finds out by a
	// path of its own; in the window, another owner may take a node's
	// subnet, or a free one.
	b := -1
	if h.rnd.IntN(4) != 0 {
		b = h.rnd.IntN(len(h.backups))
	}
	orders := map[*runner]notice{}
	var what []string
	for _, n := range h.nodes {
		orders[n] = notice(h.rnd.IntN(len(noticeNames)))
		what = append(what, n.name+":"+noticeNames[orders[n]])
		if orders[n] == noticeRestart {
			h.kill(n)
		}
	}
	victim := h.nodes[h.rnd.IntN(len(h.nodes))]
	joinVictim, joinFree := h.rnd.IntN(3) == 0, h.rnd.IntN(3) == 0
	var taken map[string]bool
	setup := func(endpoint string) {
		c := etcdtest.NewClient(h.t, endpoint)
		if b < 0 {
			if _, err := c.Put(ctxFor(h.t, 10*time.Second), testPrefix+"/config", testConfig); err != nil {
				h.t.Fatal(err)
			}
		}
		if joinVictim {
			h.foreignKey(c, victim.current(), "joiner")
		}
		if joinFree {
			h.foreignKey(c, h.freeKey(storedOwners(h.t, c)), "joiner")
		}
		taken = h.takenFrom(storedOwners(h.t, c))
	}
	for n, o := range orders {
		if o == noticeKeep || o == noticeRenewal {
			g := newOrderGate(o == noticeKeep)
			n.mu.Lock()
			n.gate = g
			n.mu.Unlock()
			n.m.history.setGate(g)
		}
	}
	if b < 0 {
		h.e.server.WipeWith(setup)
		what = append([]string{"wipe"}, what...)
	} else {
		h.e.server.Restore(h.backups[b], setup)
		what = append([]string{fmt.Sprintf("restore backup %d", b+1)}, what...)
	}
	if joinVictim {
		what = append(what, fmt.Sprintf("a joiner took %s's %v", victim.name, victim.current()))
	}
	if joinFree {
		what = append(what, "a joiner took a free subnet")
	}
	h.log = append(h.log, strings.Join(what, ", "))
	for n, o := range orders {
		if o == noticeRestart {
			h.start(n, nil)
		}
	}
	// A gated node's history check waits until its Keep has noticed:
	// it moved, or the key of the subnet it runs on is its own again.
	for n, o := range orders {
		if o != noticeKeep && o != noticeRenewal {
			continue
		}
		start := n.current()
		testutil.Eventually(15*time.Second, func() bool {
			return n.current() != start || storedOwners(h.t, h.e.admin)[start] == n.name
		})
		n.gate.release()
	}
	return taken
}

// check returns what breaks the invariants now: no two nodes run on
// overlapping subnets, none on another owner's key; each runs on a key
// etcd stores as its own, its only one, and its subnet.env names it.
func (h *restoreHistory) check() []string {
	var bad []string
	stored := storedOwners(h.t, h.e.admin)
	for i, a := range h.nodes {
		ka := a.current()
		for _, b := range h.nodes[i+1:] {
			if ka.Overlaps(b.current()) {
				bad = append(bad, fmt.Sprintf("%s and %s both run on %v / %v", a.name, b.name, ka, b.current()))
			}
		}
		var own []lease.Key
		for k, owner := range stored {
			switch {
			case owner == a.name:
				own = append(own, k)
			case k.Overlaps(ka):
				bad = append(bad, fmt.Sprintf("%s runs on %v, and %s holds %v", a.name, ka, owner, k))
			}
		}
		if len(own) != 1 || own[0] != ka {
			bad = append(bad, fmt.Sprintf("%s runs on %v; etcd stores %v as its", a.name, ka, own))
		}
		if f, err := subnetenv.Read(a.env); err != nil || f.Subnet.Masked() != ka.IPv4 {
			bad = append(bad, fmt.Sprintf("%s runs on %v; its subnet.env names %v (%v)", a.name, ka, f.Subnet, err))
		}
	}
	return bad
}

// TestRestoreHistories: random histories of backups (a copy of the data
// directory, etcdctl snapshot save, the client's Snapshot API), restores
// of any of them, wipes, operators giving a node's subnet away, restarts,
// and joiners taking a node's subnet or a free one in the window after a
// restore, under three running nodes. Each node finds a restore by a path
// chosen at random, forced where the timing cannot be: the history check,
// Keep's renewal or watch, or a listing after a restart. After every
// step: no node moved unless the step gave its subnet to another owner,
// and, once settled, no two nodes run on one subnet, each runs on the one
// key etcd stores as its own, and its subnet.env names it. WEFT_SEED
// replays a history; WEFT_RESTORE_STEPS lengthens it.
func TestRestoreHistories(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("WEFT_SEED"), 10, 64); err == nil {
		seed = s
	}
	steps := 10
	if n, err := strconv.Atoi(os.Getenv("WEFT_RESTORE_STEPS")); err == nil {
		steps = n
	}
	t.Logf("seed %d (set WEFT_SEED to replay)", seed)
	e := newEnv(t, testConfig)
	h := &restoreHistory{t: t, e: e, rnd: rand.New(rand.NewPCG(seed, 29))}
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		r := &runner{name: fmt.Sprint("node-", i), i: i, env: filepath.Join(dir, fmt.Sprintf("subnet-%d.env", i))}
		h.nodes = append(h.nodes, r)
		h.start(r, nil)
	}
	t.Cleanup(func() {
		for _, r := range h.nodes {
			r.mu.Lock()
			stop, done := r.stop, r.done
			r.mu.Unlock()
			stop()
			<-done
		}
	})
	settle := func(what string) {
		t.Helper()
		var bad []string
		if !testutil.Eventually(20*time.Second, func() bool { bad = h.check(); return len(bad) == 0 }) {
			t.Fatalf("%s: not settled after 20 s: %v\nhistory: %q\n%s", what, bad, h.log, e.logs)
		}
	}
	settle("start")
	for s := range steps {
		before := map[*runner]lease.Key{}
		for _, r := range h.nodes {
			before[r] = r.current()
			r.mu.Lock()
			r.moves = nil
			r.mu.Unlock()
		}
		taken := h.step()
		settle(fmt.Sprintf("step %d (%s)", s, h.log[len(h.log)-1]))
		for _, r := range h.nodes {
			r.mu.Lock()
			moves := slices.Clone(r.moves)
			r.mu.Unlock()
			if len(moves) > 0 && !taken[r.name] {
				t.Fatalf("step %d (%s): %s moved (%v) while %v was free\nhistory: %q\n%s",
					s, h.log[len(h.log)-1], r.name, moves, before[r], h.log, e.logs)
			}
		}
	}
	t.Logf("history: %q", h.log)
}
