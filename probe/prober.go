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
	PublicIP netip.Addr   // its underlay address, checked when Addr does not answer
	Node     string       // the node holding the lease, "" if unknown
	// MTU is the overlay device's MTU: the largest packet the overlay must
	// carry to the peer, which a path MTU check sends with DF set. 0
	// skips path MTU checks.
	MTU int
	// Overhead is what the datapath adds to a packet on the underlay (50
	// for VXLAN over IPv4, 70 over IPv6), for the diagnosis's figures.
	Overhead int
	// Encap names the datapath's traffic on the underlay for the
	// diagnosis, e.g. "UDP 8472"; "" says "the overlay's packets".
	Encap string
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
	// UnderlayTCPPort, if set, is a TCP port every peer's host answers
	// on (kubelet's 10250, sshd's 22): when neither the overlay nor an
	// ICMP echo to the peer's public address is answered (a firewall
	// that drops ICMP), a connection to it, accepted or refused, shows
	// the underlay reaches the peer. It is reset at once. 0: ICMP only.
	UnderlayTCPPort int
	// Logger gets a line when a peer's state changes: unreachable,
	// reachable again, a path MTU black hole named, its end. Default
	// slog.Default().
	Logger *slog.Logger
}

// A Prober probes a rotating sample of peers; see the package doc.
type Prober struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	echoers   [2]*echoer // IPv4, IPv6; nil while Run does not run
	openErr   [2]error
	running   bool
	rot       rotation
	peerOf    map[netip.Prefix]*peerState
	roundNo   uint64          // marks the peerStates of the current peers
	sent      [numKinds]int64 // echo requests and connections sent, by kind
	sentBytes int64           // the echoes' bytes
	peers     int             // how many peers the last round had
	last      []Target        // the last round's targets, for Find
	onDemand  chan struct{}
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
	if cfg.UnderlayTCPPort < 0 || cfg.UnderlayTCPPort > 65535 {
		return nil, fmt.Errorf("probe: UnderlayTCPPort %d: want 0 (ICMP only) or a TCP port", cfg.UnderlayTCPPort)
	}
	if cfg.Timeout > cfg.Interval {
		return nil, fmt.Errorf("probe: Timeout %s is longer than Interval %s", cfg.Timeout, cfg.Interval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Prober{
		cfg: cfg, log: cfg.Logger.With("component", "probe"), rot: newRotation(),
		peerOf: map[netip.Prefix]*peerState{}, onDemand: make(chan struct{}, maxOnDemand),
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

// round probes the next Sample peers, their path MTU included, and up to
// Sample failing ones, all at once, and forgets the results of peers
// gone.
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
	// Results of peers gone are swept by a round mark, not a set of the
	// current ones: one lookup a peer, no map of tens of thousands built
	// a round.
	p.roundNo++
	for i, t := range targets {
		ps, ok := p.peerOf[t.Subnet]
		if !ok {
			continue
		}
		ps.seen = p.roundNo
		if ps.last.State != StateReachable && !chosen[i] {
			failing = append(failing, i)
		}
	}
	if len(p.peerOf) > 0 {
		for s, ps := range p.peerOf {
			if ps.seen != p.roundNo {
				delete(p.peerOf, s)
			}
		}
	}
	p.peers, p.last = len(targets), targets
	// The longest unprobed first.
	slices.SortFunc(failing, func(a, b int) int {
		return p.peerOf[targets[a].Subnet].last.Time.Compare(p.peerOf[targets[b].Subnet].last.Time)
	})
	p.mu.Unlock()
	picked = onePerPublicIP(targets, picked, failing, p.cfg.Sample)

	var g errgroup.Group
	g.SetLimit(inFlight)
	for _, i := range picked {
		g.Go(func() error {
			p.check(ctx, targets[i])
			return nil
		})
	}
	g.Wait()
}

// onePerPublicIP returns the rotation's picks and up to n of the failing
// peers, at most one of each public address: what a round probes. A
// node's leases may share a PublicIP (admission lets them, as while a node
// moves subnets), and a writer may publish any number of them naming
// another host's address, with subnets routed to it: each probe of them
// lands on that host, over the overlay and the underlay. One check a round
// per address bounds what any one host gets from a node to one check's
// packets an Interval (attempts small echoes and, for a peer that
// answers, up to 1+searchSplits sizes; for one that does not, attempts
// underlay echoes and one TCP connection), whatever was published. A peer
// left out waits for the next round (failing) or its next turn (picked).
func onePerPublicIP(targets []Target, picked, failing []int, n int) []int {
	seen := make(map[netip.Addr]bool, len(picked)+n)
	first := func(i int) bool {
		ip := targets[i].PublicIP
		if !ip.IsValid() {
			return true
		}
		if seen[ip] {
			return false
		}
		seen[ip] = true
		return true
	}
	out := picked[:0:0]
	for _, i := range picked {
		if first(i) {
			out = append(out, i)
		}
	}
	for _, i := range failing {
		if n == 0 {
			break
		}
		if first(i) {
			out = append(out, i)
			n--
		}
	}
	return out
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
	r, recorded := p.check(ctx, t)
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
