//go:build linux

package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/internal/ctxutil"
)

// Defaults for Config.
const (
	DefaultSample   = 8
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = time.Second
)

// attempts is how many echo requests one probe sends at most, spread over
// the timeout: one lost packet does not make a peer unreachable.
const attempts = 3

// On-demand probes, which a status endpoint lets anyone who reaches it
// ask for, are bounded: maxOnDemand in flight, one started per
// onDemandEvery.
const (
	maxOnDemand   = 4
	onDemandEvery = 100 * time.Millisecond
)

// Bounds of Config.
const (
	MaxSample  = 1000
	MinTimeout = 10 * time.Millisecond
	// inFlight bounds the probes a round runs at once.
	inFlight = 256
)

// A Target is a peer to probe.
type Target struct {
	Subnet   netip.Prefix // the peer's subnet, which identifies it
	Addr     netip.Addr   // the address probed: the peer's VTEP address
	PublicIP netip.Addr   // where its VXLAN packets go, for logs
	Node     string       // the node holding the lease, "" if unknown
}

// Config configures a Prober.
type Config struct {
	// Namespace holds the VXLAN devices. The zero value and netns.None()
	// mean the caller's.
	Namespace netns.NsHandle
	// Targets returns the peers to probe now. It is called once a round
	// and for each on-demand probe. Required.
	Targets func() []Target
	// Ready, if set, pauses the rounds while it returns false: an agent
	// whose datapath is still programming its peers would otherwise
	// report peers unreachable that are only not programmed yet. A
	// paused round changes no result. nil: never paused.
	Ready func() bool
	// Sample is how many peers a round probes, besides re-probing up to
	// as many unreachable ones. Default DefaultSample (8).
	Sample int
	// Interval is the time between rounds. Default DefaultInterval (10s).
	Interval time.Duration
	// Timeout is how long a probe waits for a reply. Default
	// DefaultTimeout (1s).
	Timeout time.Duration
	// OnResult, if set, is called with each probe's outcome, for
	// metrics. It must not block.
	OnResult func(Target, Result)
	// Logger gets a line when a peer turns unreachable and when it
	// recovers. Default slog.Default().
	Logger *slog.Logger
}

// A Result is the outcome of a peer's last probe.
type Result struct {
	Time      time.Time     // when the probe started
	Reachable bool          // a reply came back
	RTT       time.Duration // the round trip of the first reply
	Sent      int           // echo requests sent
	Err       string        // why the peer is unreachable: no reply, or the send's error
	// Since is when the peer last turned reachable or unreachable: the
	// time of its first probe with this outcome.
	Since time.Time
}

// Counts aggregates the last results of the current peers.
type Counts struct {
	Reachable   int
	Unreachable int
	Unprobed    int // peers not probed yet
}

// A Prober probes a rotating sample of peers; see the package doc.
type Prober struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	echoers  [2]*echoer // IPv4, IPv6; nil while Run does not run
	openErr  [2]error
	running  bool
	rot      rotation
	results  map[netip.Prefix]Result
	peers    int      // how many peers the last round had
	last     []Target // the last round's targets, for Find
	onDemand chan struct{}
	// nextOnDemand is the earliest start of the next on-demand probe.
	nextOnDemand time.Time
}

// New checks cfg. It opens nothing until Run.
func New(cfg Config) (*Prober, error) {
	if cfg.Targets == nil {
		return nil, errors.New("probe: Config.Targets is required")
	}
	cfg.Sample = cmp.Or(cfg.Sample, DefaultSample)
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	if cfg.Sample < 0 || cfg.Sample > MaxSample || cfg.Interval < 0 || cfg.Timeout < MinTimeout {
		return nil, fmt.Errorf("probe: Sample %d (want 1 to %d), Interval %s, Timeout %s (want at least %s)", cfg.Sample, MaxSample, cfg.Interval, cfg.Timeout, MinTimeout)
	}
	if cfg.Timeout > cfg.Interval {
		return nil, fmt.Errorf("probe: Timeout %s is longer than Interval %s", cfg.Timeout, cfg.Interval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Prober{
		cfg: cfg, log: cfg.Logger.With("component", "probe"), rot: newRotation(),
		results: map[netip.Prefix]Result{}, onDemand: make(chan struct{}, maxOnDemand),
	}, nil
}

// Period is the time within which every one of n peers is probed at
// least once: ceil(n/Sample) rounds.
func (p *Prober) Period(n int) time.Duration {
	rounds := max(1, (n+p.cfg.Sample-1)/p.cfg.Sample)
	return time.Duration(rounds) * p.cfg.Interval
}

// Config returns the configuration in force, defaults filled in.
func (p *Prober) Config() Config { return p.cfg }

// Run probes a round every Interval until ctx is done, then returns
// ctx.Err(). It fails at once if neither family's socket opens.
func (p *Prober) Run(ctx context.Context) error {
	var open [2]*echoer
	var errs [2]error
	for i := range open {
		open[i], errs[i] = openEchoer(p.cfg.Namespace, i == 1)
	}
	if open[0] == nil && open[1] == nil {
		return errors.Join(errs[0], errs[1])
	}
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		for _, e := range open {
			if e != nil {
				e.close()
			}
		}
		return errors.New("probe: Run is already running")
	}
	p.echoers, p.openErr, p.running = open, errs, true
	p.mu.Unlock()
	var readers sync.WaitGroup
	for _, e := range open {
		if e != nil {
			readers.Go(e.serve)
		}
	}
	defer func() {
		p.mu.Lock()
		p.echoers, p.running = [2]*echoer{}, false
		p.mu.Unlock()
		for _, e := range open {
			if e != nil {
				e.close()
			}
		}
		readers.Wait()
	}()

	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// round probes the next Sample peers and up to Sample unreachable ones,
// all at once, and forgets the results of peers gone.
func (p *Prober) round(ctx context.Context) {
	if p.cfg.Ready != nil && !p.cfg.Ready() {
		return
	}
	targets := p.cfg.Targets()
	p.mu.Lock()
	picked := p.rot.next(targets, p.cfg.Sample)
	chosen := make(map[int]bool, len(picked))
	for _, i := range picked {
		chosen[i] = true
	}
	var failing []int
	current := make(map[netip.Prefix]bool, len(targets))
	for i, t := range targets {
		current[t.Subnet] = true
		if r, ok := p.results[t.Subnet]; ok && !r.Reachable && !chosen[i] {
			failing = append(failing, i)
		}
	}
	for s := range p.results {
		if !current[s] {
			delete(p.results, s)
		}
	}
	p.peers, p.last = len(targets), targets
	// The longest unprobed first.
	slices.SortFunc(failing, func(a, b int) int {
		return p.results[targets[a].Subnet].Time.Compare(p.results[targets[b].Subnet].Time)
	})
	p.mu.Unlock()
	picked = append(picked, failing[:min(len(failing), p.cfg.Sample)]...)

	var g errgroup.Group
	g.SetLimit(inFlight)
	for _, i := range picked {
		g.Go(func() error {
			p.probe(ctx, targets[i])
			return nil
		})
	}
	g.Wait()
}

// Probe probes one peer now, records the result as a round's would be,
// and returns it. target is matched against the current peers by Find.
// At most a few on-demand probes run at once (more fail at once with
// ErrBusy), each starting at least onDemandEvery after the last, waiting
// its turn. A probe cut short by ctx is not recorded.
func (p *Prober) Probe(ctx context.Context, target string) (Target, Result, error) {
	select {
	case p.onDemand <- struct{}{}:
		defer func() { <-p.onDemand }()
	default:
		return Target{}, Result{}, ErrBusy
	}
	// One start per onDemandEvery: a caller waits its turn.
	p.mu.Lock()
	running := p.running
	start := time.Now()
	if start.Before(p.nextOnDemand) {
		start = p.nextOnDemand
	}
	p.nextOnDemand = start.Add(onDemandEvery)
	p.mu.Unlock()
	if !running {
		return Target{}, Result{}, errors.New("probe: the prober is not running")
	}
	if err := ctxutil.Sleep(ctx, time.Until(start)); err != nil {
		return Target{}, Result{}, err
	}
	t, ok := p.Find(target)
	if !ok {
		return Target{}, Result{}, fmt.Errorf("probe: %q is not a current peer: give its subnet, an address in it, its public IP or its node name", target)
	}
	r, recorded := p.probe(ctx, t)
	if !recorded {
		return t, r, ctx.Err()
	}
	return t, r, nil
}

// ErrBusy is Probe's answer when too many on-demand probes were asked for.
var ErrBusy = errors.New("probe: too many on-demand probes; try again in a moment")

// Find returns the peer target names, among the last round's peers (the
// current ones before the first round): by subnet, by an address in the
// subnet, by public IP, or by node name.
func (p *Prober) Find(target string) (Target, bool) {
	p.mu.Lock()
	targets := p.last
	p.mu.Unlock()
	if targets == nil {
		targets = p.cfg.Targets()
	}
	if pfx, err := netip.ParsePrefix(target); err == nil {
		for _, t := range targets {
			if t.Subnet == pfx.Masked() {
				return t, true
			}
		}
		return Target{}, false
	}
	if a, err := netip.ParseAddr(target); err == nil {
		for _, t := range targets {
			if t.Subnet.Contains(a) || t.PublicIP == a {
				return t, true
			}
		}
		return Target{}, false
	}
	for _, t := range targets {
		if t.Node != "" && t.Node == target {
			return t, true
		}
	}
	return Target{}, false
}

// probe sends up to attempts echo requests to t, spread over the timeout,
// and records the outcome, unless ctx ended first: a probe cut short says
// nothing of the peer.
func (p *Prober) probe(ctx context.Context, t Target) (Result, bool) {
	r := Result{Time: time.Now()}
	fam := 0
	if t.Addr.Is6() {
		fam = 1
	}
	p.mu.Lock()
	e, openErr := p.echoers[fam], p.openErr[fam]
	p.mu.Unlock()
	switch {
	case !t.Addr.IsValid():
		r.Err = "no address to probe"
	case e == nil && openErr != nil:
		r.Err = openErr.Error()
	case e == nil:
		r.Err = "the prober is not running"
	default:
		p.echo(ctx, e, t.Addr, &r)
	}
	if ctx.Err() != nil {
		return r, false
	}
	return p.record(t, r), true
}

func (p *Prober) echo(ctx context.Context, e *echoer, dst netip.Addr, r *Result) {
	replies := make(chan time.Duration, attempts)
	deadline := time.NewTimer(p.cfg.Timeout)
	defer deadline.Stop()
	gap := time.NewTicker(p.cfg.Timeout / attempts)
	defer gap.Stop()
	var sendErr error
	for {
		if r.Sent < attempts {
			forget, err := e.send(dst, replies)
			if err != nil {
				sendErr = err
			} else {
				r.Sent++
				defer forget()
			}
		}
		select {
		case rtt := <-replies:
			r.Reachable, r.RTT = true, rtt
			return
		case <-deadline.C:
			r.Err = fmt.Sprintf("no reply to %d echo requests in %s", r.Sent, p.cfg.Timeout)
			if r.Sent == 0 && sendErr != nil {
				r.Err = "send: " + sendErr.Error()
			}
			return
		case <-ctx.Done():
			r.Err = ctx.Err().Error()
			return
		case <-gap.C:
		}
	}
}

// record keeps r as t's last result, logs a change of reachability, and
// returns r with Since set.
func (p *Prober) record(t Target, r Result) Result {
	p.mu.Lock()
	prev, had := p.results[t.Subnet]
	r.Since = r.Time
	if had && prev.Reachable == r.Reachable {
		r.Since = prev.Since
	}
	p.results[t.Subnet] = r
	p.mu.Unlock()
	switch {
	case !r.Reachable && (!had || prev.Reachable):
		p.log.Warn("peer unreachable over the overlay", "subnet", t.Subnet, "vtep", t.Addr, "public_ip", t.PublicIP, "node", t.Node, "err", r.Err)
	case r.Reachable && had && !prev.Reachable:
		p.log.Info("peer reachable over the overlay again", "subnet", t.Subnet, "vtep", t.Addr, "public_ip", t.PublicIP, "node", t.Node, "rtt", r.RTT, "unreachable_for", r.Time.Sub(prev.Since).Round(time.Millisecond))
	}
	if p.cfg.OnResult != nil {
		p.cfg.OnResult(t, r)
	}
	return r
}

// Result returns the last probe of the peer at subnet.
func (p *Prober) Result(subnet netip.Prefix) (Result, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.results[subnet]
	return r, ok
}

// Results returns the last probe of every peer probed, by subnet.
func (p *Prober) Results() map[netip.Prefix]Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[netip.Prefix]Result, len(p.results))
	for s, r := range p.results {
		out[s] = r
	}
	return out
}

// Unreachable returns the subnets of the peers whose last probe got no
// reply.
func (p *Prober) Unreachable() []netip.Prefix {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.Prefix
	for s, r := range p.results {
		if !r.Reachable {
			out = append(out, s)
		}
	}
	return out
}

// Counts aggregates the last results of the peers of the last round:
// those of peers gone since are forgotten at the next one.
func (p *Prober) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	var c Counts
	for _, r := range p.results {
		if r.Reachable {
			c.Reachable++
		} else {
			c.Unreachable++
		}
	}
	c.Unprobed = max(0, p.peers-c.Reachable-c.Unreachable)
	return c
}
