package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
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
)

// agent is what a node's daemon does with its Manager: acquire, keep, and
// acquire again after a loss, giving up a lease the network config in
// force leaves out (as agent.Network does). It records what it holds, the
// subnet it would route.
type agent struct {
	name  string
	attrs lease.Attrs
	m     *Manager

	mu   sync.Mutex
	held lease.Key // zero while it holds nothing
	stop context.CancelFunc
	done chan struct{}
}

func (a *agent) holding() lease.Key {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

func (a *agent) set(k lease.Key) {
	a.mu.Lock()
	a.held = k
	a.mu.Unlock()
}

// configSeen is the latest config an agent's WatchConfig delivered, and a
// signal for each change.
type configSeen struct {
	mu      sync.Mutex
	cfg     lease.Config
	ok      bool
	changed chan struct{}
}

func (c *configSeen) get() (lease.Config, bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg, c.ok, c.changed
}

func (c *configSeen) put(cfg lease.Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg, c.ok = cfg, true
	close(c.changed)
	c.changed = make(chan struct{})
}

func outside(k lease.Key, cfg lease.Config) bool {
	return cfg.Network.IsValid() && !(cfg.Network.Bits() <= k.IPv4.Bits() && cfg.Network.Contains(k.IPv4.Addr()))
}

func (a *agent) run(ctx context.Context) {
	defer close(a.done)
	seen := &configSeen{changed: make(chan struct{})}
	configs := make(chan lease.Config)
	go a.m.WatchConfig(ctx, configs)
	go func() {
		for {
			select {
			case c := <-configs:
				seen.put(c)
			case <-ctx.Done():
				return
			}
		}
	}()
	var prev lease.Key
	for {
		l, err := a.m.Acquire(ctx, lease.AcquireRequest{Attrs: a.attrs, Previous: prev})
		if err != nil {
			return
		}
		kctx, drop := context.WithCancel(ctx)
		dropped := make(chan struct{})
		go func() {
			for {
				cfg, ok, changed := seen.get()
				if ok && outside(l.Key, cfg) {
					close(dropped)
					drop()
					return
				}
				select {
				case <-changed:
				case <-kctx.Done():
					return
				}
			}
		}()
		a.set(l.Key)
		a.m.Keep(kctx, l)
		a.set(lease.Key{})
		drop()
		if ctx.Err() != nil {
			return
		}
		prev = l.Key
		select {
		case <-dropped:
			prev = lease.Key{}
		default:
		}
	}
}

// history drives one random sequence of the roads to a duplicate subnet
// against a real etcd, and checks after every step that no two live nodes
// route one subnet and that every honest node holds one.
type history struct {
	t      *testing.T
	e      *env
	rnd    *rand.Rand
	agents []*agent
	next   int    // attribute index of the next agent
	config string // the config in force
	// snapshot, if taken, is a backup to restore later.
	snapshot string
	log      []string
}

var historyConfigs = []string{
	`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`,
	`{"Network": "10.245.0.0/16", "Backend": {"Type": "vxlan"}}`,
	`{"Network": "10.0.0.0/8", "Backend": {"Type": "vxlan"}}`,
}

func (h *history) start(name string, endpoint ...string) *agent {
	h.next++
	a := &agent{name: name, attrs: attrsFor(h.next), done: make(chan struct{})}
	a.m = h.manager(name, endpoint...)
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	go a.run(ctx)
	h.agents = append(h.agents, a)
	h.t.Cleanup(func() { cancel(); <-a.done })
	return a
}

// historySettle is the agents' SettleTime: how long a host that found its
// name held by another waits, after that lease vanished, before taking a
// fresh subnet. Short, so that a clone whose holder died is not held up
// past the settle deadline.
const historySettle = 5 * time.Second

func (h *history) manager(name string, endpoint ...string) *Manager {
	return h.e.managerWith(name, func(o *Options) {
		if len(endpoint) > 0 {
			o.Endpoints = endpoint
		}
		o.SettleTime = historySettle
		// As long as in production, relative to the history: a
		// renewal must not be what finds a forgotten key.
		o.TTL, o.RenewMargin = time.Hour, 5*time.Minute
	})
}

// kill stops an agent as a crash would: its key stays until it lapses.
func (h *history) kill(a *agent) {
	a.stop()
	<-a.done
	a.m.Close()
	h.agents = slices.DeleteFunc(h.agents, func(b *agent) bool { return b == a })
}

// honest reports, for each name in use, the agents that present it.
func (h *history) byName() map[string][]*agent {
	out := map[string][]*agent{}
	for _, a := range h.agents {
		out[a.name] = append(out[a.name], a)
	}
	return out
}

// overlaps lists pairs of live agents of different names that hold
// overlapping subnets, and names held by two agents at once.
func (h *history) overlaps() []string {
	var bad []string
	for i, a := range h.agents {
		ka := a.holding()
		if !ka.IsValid() {
			continue
		}
		for _, b := range h.agents[i+1:] {
			if kb := b.holding(); kb.IsValid() && ka.Overlaps(kb) {
				bad = append(bad, fmt.Sprintf("%s(%s) and %s(%s) both route %v / %v", a.name, a.attrs.PublicIP, b.name, b.attrs.PublicIP, ka, kb))
			}
		}
	}
	return bad
}

// settled reports what still keeps the history from its invariant: every
// name in use is held by exactly one of its agents, on a key etcd stores
// under that name and that agent's address, inside the Network in force,
// and no two agents route overlapping subnets.
func (h *history) settled() []string {
	bad := h.overlaps()
	var cfg lease.Config
	json.Unmarshal([]byte(h.config), &cfg)
	stored := h.stored()
	for name, as := range h.byName() {
		var holders []*agent
		for _, a := range as {
			if a.holding().IsValid() {
				holders = append(holders, a)
			}
		}
		if len(holders) != 1 {
			bad = append(bad, fmt.Sprintf("%s is held by %d of its %d agents", name, len(holders), len(as)))
			continue
		}
		a := holders[0]
		k := a.holding()
		if got, ok := stored[k]; !ok || got.Owner != name || got.PublicIP != a.attrs.PublicIP {
			bad = append(bad, fmt.Sprintf("%s routes %v, which etcd stores as %+v", name, k, got))
		}
		if outside(k, cfg) {
			bad = append(bad, fmt.Sprintf("%s routes %v outside %v", name, k, cfg.Network))
		}
	}
	return bad
}

func (h *history) stored() map[lease.Key]lease.Attrs {
	resp, err := h.e.admin.Get(ctxFor(h.t, 10*time.Second), testPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[lease.Key]lease.Attrs{}
	for _, kv := range resp.Kvs {
		k, err := lease.ParseKey(strings.TrimPrefix(string(kv.Key), testPrefix+"/subnets/"))
		var a lease.Attrs
		if err == nil && json.Unmarshal(kv.Value, &a) == nil {
			out[k] = a
		}
	}
	return out
}

// step takes one random road.
func (h *history) step() {
	live := h.agents
	pick := func() *agent { return live[h.rnd.IntN(len(live))] }
	restorable := h.e.server.External() && h.e.server.Etcdctl() != ""
	switch r := h.rnd.IntN(100); {
	case r < 20 || len(live) < 2:
		a := h.start(fmt.Sprint("node-", h.next+1))
		h.log = append(h.log, "join "+a.name)
	case r < 35:
		a := pick()
		h.kill(a)
		h.log = append(h.log, "kill "+a.name)
	case r < 55:
		// A cloned VM: another host with a live or dead name.
		name := pick().name
		if h.rnd.IntN(2) == 0 {
			name = fmt.Sprint("node-", 1+h.rnd.IntN(h.next))
		}
		h.start(name)
		h.log = append(h.log, "clone "+name)
	case r < 75:
		others := slices.DeleteFunc(slices.Clone(historyConfigs), func(c string) bool { return c == h.config })
		c := others[h.rnd.IntN(len(others))]
		h.config = c
		h.e.put(testPrefix+"/config", c)
		var cfg lease.Config
		json.Unmarshal([]byte(c), &cfg)
		h.log = append(h.log, "network "+cfg.Network.String())
	case r < 82 && restorable && h.snapshot == "":
		h.snapshot = h.e.server.Snapshot()
		h.log = append(h.log, "snapshot")
	default:
		// Wiped, or restored from the snapshot, with the config in force
		// put back; maybe a node joins in the window, asking for a live
		// node's subnet, which the new store lacks.
		victim := pick()
		asked := victim.holding()
		joins := h.rnd.IntN(2) == 0 && asked.IsValid()
		setup := func(endpoint string) {
			if _, err := etcdtest.NewClient(h.t, endpoint).Put(ctxFor(h.t, 10*time.Second), testPrefix+"/config", h.config); err != nil {
				h.t.Fatal(err)
			}
			if !joins {
				return
			}
			h.next++
			j := &agent{name: fmt.Sprint("window-", h.next), attrs: attrsFor(h.next), done: make(chan struct{})}
			j.m = h.manager(j.name, endpoint)
			if _, err := j.m.Acquire(ctxFor(h.t, 10*time.Second), lease.AcquireRequest{Attrs: j.attrs, Previous: asked}); err != nil {
				h.t.Fatal(err)
			}
			// From now on the joiner is an agent like the others; its
			// Acquire is repeated, and finds its key.
			ctx, cancel := context.WithCancel(context.Background())
			j.stop = cancel
			go j.run(ctx)
			h.agents = append(h.agents, j)
			h.t.Cleanup(func() { cancel(); <-j.done })
		}
		what := "wipe"
		if h.snapshot != "" && h.rnd.IntN(2) == 0 {
			h.e.server.RestoreWith(h.snapshot, setup)
			h.snapshot, what = "", "restore"
		} else {
			h.e.server.WipeWith(setup)
		}
		if joins {
			what += fmt.Sprintf(", a node joining on %s's %v", victim.name, asked)
		}
		h.log = append(h.log, what)
	}
}

// TestRandomHistories: random sequences of joins, crashes, cloned hosts,
// Network changes (moved and widened), wipes and restores of etcd, some
// with a node joining in the window after, against a real etcd. After
// every step: no two live nodes route overlapping subnets for longer
// than the 5 s recovery target, and within it every name in use is held
// by exactly one of its hosts, on a key etcd stores as that host's,
// inside the Network in force.
//
// History i draws from a PCG seeded (seed, i). The seed is the time unless
// WEFT_HISTORY_SEED gives it: "S" replays the three histories of seed S,
// "S/i" history i alone. A failure names both (subtest seed-S/history-i).
func TestRandomHistories(t *testing.T) {
	t.Parallel()
	const (
		histories = 3
		steps     = 12
		target    = 5 * time.Second
	)
	seed, only := historySeed(t)
	t.Logf("seed %d (WEFT_HISTORY_SEED=%d replays it, WEFT_HISTORY_SEED=%d/N history N alone)", seed, seed, seed)
	for i := range histories {
		if only >= 0 && i != only {
			continue
		}
		t.Run(fmt.Sprintf("seed-%d/history-%d", seed, i), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, historyConfigs[0])
			h := &history{t: t, e: e, rnd: rand.New(rand.NewPCG(seed, uint64(i))), config: historyConfigs[0]}
			for range 3 {
				h.start(fmt.Sprint("node-", h.next+1))
			}
			// Overlaps may exist only while a wipe is being recovered
			// from; none may last past the target.
			var mu sync.Mutex
			since := map[string]time.Time{}
			sampler := testutil.Sample(20*time.Millisecond, func() (lapses []string) {
				mu.Lock()
				defer mu.Unlock()
				now := time.Now()
				current := map[string]bool{}
				for _, o := range h.overlaps() {
					current[o] = true
					if _, ok := since[o]; !ok {
						since[o] = now
					}
					if now.Sub(since[o]) > target {
						lapses = append(lapses, fmt.Sprintf("%s for over %v (after %q)", o, target, h.log))
					}
				}
				for o := range since {
					if !current[o] {
						delete(since, o)
					}
				}
				return lapses
			})
			for s := range steps {
				began := time.Now()
				mu.Lock()
				h.step()
				mu.Unlock()
				var last []string
				if !testutil.Eventually(2*target, func() bool {
					mu.Lock()
					last = h.settled()
					mu.Unlock()
					return len(last) == 0
				}) {
					sampler.Check(t, "two nodes routed one subnet")
					t.Fatalf("step %d (%s): not settled after %v: %v\nhistory: %q\n%s", s, h.log[len(h.log)-1], 2*target, last, h.log, e.logs)
				}
				h.log[len(h.log)-1] += fmt.Sprintf(" (settled in %v)", time.Since(began).Round(10*time.Millisecond))
			}
			sampler.Check(t, "two nodes routed one subnet")
			t.Logf("history: %q", h.log)
		})
	}
}

// historySeed returns the seed TestRandomHistories draws from, and the one
// history to run (-1 for all), from WEFT_HISTORY_SEED ("S" or "S/i"), or
// the time if it is unset.
func historySeed(t *testing.T) (seed uint64, only int) {
	v := os.Getenv("WEFT_HISTORY_SEED")
	if v == "" {
		return uint64(time.Now().UnixNano()), -1
	}
	s, i, one := strings.Cut(v, "/")
	seed, err := strconv.ParseUint(s, 10, 64)
	only = -1
	if err == nil && one {
		only, err = strconv.Atoi(i)
	}
	if err != nil || one && only < 0 {
		t.Fatalf("WEFT_HISTORY_SEED=%q: want a seed, or seed/history (e.g. 1796696230589590797/1)", v)
	}
	return seed, only
}
