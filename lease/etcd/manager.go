package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/condition"
	"github.com/weftnet/weft/lease"
)

// Defaults for Options.
const (
	DefaultPrefix      = "/coreos.com/network"
	DefaultTTL         = 24 * time.Hour
	DefaultRenewMargin = time.Hour
	// DefaultDialTimeout was the default of Options.DialTimeout.
	//
	// Deprecated: Options.DialTimeout is ignored.
	DefaultDialTimeout = 5 * time.Second
	// DefaultRequestTimeout bounds each etcd request, so that an outage
	// is noticed and logged instead of waited out in silence.
	DefaultRequestTimeout = 10 * time.Second
	DefaultSettleTime     = 30 * time.Second
)

// keepAliveTime and keepAliveTimeout: how often the client pings etcd, and
// how long it waits for the answer before it takes the connection for dead.
const (
	keepAliveTime    = 10 * time.Second
	keepAliveTimeout = 3 * time.Second
)

// ErrNoConfig means there is no network configuration under the prefix yet.
var ErrNoConfig = errors.New("no network config in etcd")

// Options configure a Manager. Node is required; every other field has a
// documented default.
type Options struct {
	// Client is an existing client to use. When set, Endpoints, the TLS
	// files, the credentials and DialTimeout are ignored, and Close leaves
	// the client open.
	Client *clientv3.Client

	// Endpoints are the etcd client URLs, e.g. "https://10.0.0.1:2379".
	Endpoints []string
	// CAFile, CertFile and KeyFile enable TLS: the CA to verify the
	// servers, and the client certificate and key. All are optional.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate to etcd when both are set. The
	// Manager logs in when a request first needs it, and again whenever
	// etcd refuses its token (expired, or etcd restarted); a refused
	// login is reported as ErrAuthentication, and retried.
	Username, Password string
	// DialTimeout is ignored: New does not connect (requests do, each
	// bounded by RequestTimeout), so there is nothing for it to bound.
	//
	// Deprecated: set RequestTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds each etcd request; a request that times out is
	// logged and retried. Default 10s.
	RequestTimeout time.Duration

	// Prefix is where the network lives. Default "/coreos.com/network". It
	// is cleaned as flannel's path.Join cleans it ("/a//b/" is "/a/b").
	Prefix string
	// Node is this node's stable identity, written as each lease's owner.
	// It must survive restarts and reboots: a hostname, a machine ID or a
	// Kubernetes node name. Required.
	Node string
	// TTL is the life of a lease that is not renewed. Default 24h; at
	// least 2s. etcd counts it in whole seconds.
	TTL time.Duration
	// RenewMargin is how long before expiry a lease is renewed. Default 1h;
	// it must be shorter than TTL.
	RenewMargin time.Duration
	// ChallengeTimeout is how long a holder of this node's name on
	// another host has to answer a claim on its lease before this node
	// takes the lease over (see ErrIdentityCollision). A holder that
	// answered is asked again every six of these. Default 5s.
	ChallengeTimeout time.Duration
	// SettleTime is how long, after etcd was found wiped or restored
	// from an older backup, WatchLeases keeps sending the leases the new
	// store lacks, so that their nodes have time to re-assert them before
	// their peers drop them. Default 30s.
	SettleTime time.Duration
	// Logger receives one line per state change. Default slog.Default().
	Logger *slog.Logger
}

// A Manager is a lease.Manager on etcd v3. It is safe for concurrent use.
type Manager struct {
	client    *clientv3.Client
	ownClient bool
	prefix    string
	node      string
	ttl       time.Duration
	margin    time.Duration
	timeout   time.Duration // per request
	log       *slog.Logger

	challengeTimeout time.Duration
	claimLog         logLimiter // claims answered, by claimant
	conflictLog      logLimiter // keys of this node's not used for an older overlapping lease, by key
	skips            skipLog    // keys a watcher skips: a writer may make any number

	history     *continuity // what the store's history has shown; see continuity.go
	settle      time.Duration
	stopMonitor context.CancelFunc

	mu   sync.Mutex
	held map[lease.Key]heldLease // what this Manager last wrote for its own leases

	// recent is Acquire's last listing, which the first WatchLeases
	// snapshot takes instead of listing again (see reuse.go).
	recent recentListing
	// listingValues is the bytes of values a listing holds before it
	// is compact (see compactor): the constant, but for tests.
	listingValues int

	// Counters and current conditions, for Stats.
	renewals, losses, errs, collisions, conflicts atomic.Int64
	conditions                                    condition.Set // by operation: why it is failing now
}

// Stats are a Manager's counters since New, for metrics, and its current
// condition, for readiness output.
type Stats struct {
	Renewals int64 // successful renewals of this node's lease
	Losses   int64 // leases lost (expired, deleted or taken)
	Errors   int64 // failed etcd requests, each retried
	// Collisions counts claims on this node's lease that another host
	// with its name made and this node answered.
	Collisions int64
	// Conflicts counts reports of keys under this node's name that
	// overlap an older lease, which it does not use (see Acquire); each
	// key at most every ten minutes.
	Conflicts int64
	// Condition says why etcd requests are failing right now, e.g.
	// "etcd unreachable: context deadline exceeded"; "" when they are not.
	Condition string
}

// setCondition records why operation what is failing, or clears it.
func (m *Manager) setCondition(what, cond string) { m.conditions.Set(what, cond) }

// Stats returns the counters and the current condition.
func (m *Manager) Stats() Stats {
	return Stats{Renewals: m.renewals.Load(), Losses: m.losses.Load(), Errors: m.errs.Load(), Collisions: m.collisions.Load(), Conflicts: m.conflicts.Load(), Condition: m.conditions.String()}
}

// heldLease is what a renewal must compare against: the revision this node
// last saw the key at, and the etcd lease the key is attached to.
type heldLease struct {
	rev int64
	id  clientv3.LeaseID // 0 for a reservation
	// ours says this Manager granted id, so revoking it can only affect
	// this key. A lease found on the key may carry other nodes' keys too
	// (an operator may attach several keys to one lease): never revoke it.
	ours bool
	// renewedAt is when this Manager last attached a fresh lease; zero if
	// unknown, which makes Keep renew at once.
	renewedAt time.Time
	// returns is the connection's count of returns (see continuity)
	// before the write this state comes from: if the connection came
	// back since, the store may have forgotten the write.
	returns uint64
}

var (
	_ lease.Manager           = (*Manager)(nil)
	_ lease.ConditionReporter = (*Manager)(nil)
	_ lease.Releaser          = (*Manager)(nil)
	_ lease.ExpiryReader      = (*Manager)(nil)
	_ lease.Republisher       = (*Manager)(nil)
	_ lease.RenewalCounter    = (*Manager)(nil)
	_ io.Closer               = (*Manager)(nil)
)

// Node implements lease.Manager: Options.Node.
func (m *Manager) Node() string { return m.node }

// Expiry implements lease.ExpiryReader: when the etcd lease on this node's
// key k runs out unless Keep renews it again, as of the last renewal this
// Manager made or learned of.
func (m *Manager) Expiry(k lease.Key) (time.Time, bool) {
	h, ok := m.getHeld(k)
	if !ok || h.id == 0 || h.renewedAt.IsZero() {
		return time.Time{}, false
	}
	return h.renewedAt.Add(m.ttl), true
}

// Renewals implements lease.RenewalCounter: Stats().Renewals.
func (m *Manager) Renewals() int64 { return m.renewals.Load() }

// Condition implements lease.ConditionReporter: Stats().Condition.
func (m *Manager) Condition() string { return m.conditions.String() }

// New returns a Manager. It connects lazily, and logs in (Options.Username)
// only when a request needs it: an unreachable etcd, or one that refuses
// the credentials, is not an error here, and the Manager's methods wait
// for it. New fails only for options that cannot work: no Node, no
// Endpoints, unreadable TLS files.
func New(opts Options) (*Manager, error) { return newManager(opts, false) }

// newManager is New, or with observer the Manager behind an Observer,
// which has no node.
func newManager(opts Options, observer bool) (*Manager, error) {
	if observer {
		opts.Node = observerNode
		opts.TTL, opts.RenewMargin, opts.ChallengeTimeout = 0, 0, 0
	}
	if opts.Node == "" {
		return nil, errors.New("etcd: Options.Node is required: set it to a stable node identity such as the hostname")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if p := path.Clean(opts.Prefix); p == "/" || p == "." {
		return nil, fmt.Errorf("etcd: Options.Prefix %q names no directory; use e.g. %q", opts.Prefix, DefaultPrefix)
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.RenewMargin == 0 {
		opts.RenewMargin = DefaultRenewMargin
	}
	if opts.TTL < 2*time.Second {
		return nil, fmt.Errorf("etcd: Options.TTL %v is too short; use at least 2s", opts.TTL)
	}
	if opts.RenewMargin >= opts.TTL {
		return nil, fmt.Errorf("etcd: Options.RenewMargin %v must be shorter than TTL %v", opts.RenewMargin, opts.TTL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ChallengeTimeout == 0 {
		opts.ChallengeTimeout = DefaultChallengeTimeout
	}
	if opts.SettleTime == 0 {
		opts.SettleTime = DefaultSettleTime
	}
	m := &Manager{
		listingValues:    listingValues,
		challengeTimeout: opts.ChallengeTimeout,
		history:          newContinuity(),
		settle:           opts.SettleTime,
		claimLog:         logLimiter{period: 10 * time.Minute},
		conflictLog:      logLimiter{period: 10 * time.Minute},
		client:           opts.Client,
		prefix:           path.Clean(opts.Prefix),
		timeout:          opts.RequestTimeout,
		node:             opts.Node,
		ttl:              opts.TTL,
		margin:           opts.RenewMargin,
		log:              opts.Logger.With("component", "lease/etcd", "node", opts.Node),
		held:             map[lease.Key]heldLease{},
	}
	if observer {
		m.log = opts.Logger.With("component", "lease/etcd", "role", "observer")
	}
	if m.client == nil {
		c, err := newClient(opts)
		if err != nil {
			return nil, err
		}
		m.client, m.ownClient = c, true
	}
	monitor, stop := context.WithCancel(context.Background())
	m.stopMonitor = stop
	go m.watchConnection(monitor)
	return m, nil
}

// Close stops the Manager's watch on its connection and releases the
// client if New created it. It does not touch any lease.
func (m *Manager) Close() error {
	m.stopMonitor()
	if m.ownClient {
		return m.client.Close()
	}
	return nil
}

func (m *Manager) configKey() string     { return m.prefix + "/config" }
func (m *Manager) subnetsPrefix() string { return m.prefix + "/subnets/" }
func (m *Manager) keyPath(k lease.Key) string {
	return m.subnetsPrefix() + k.String()
}

// request returns a context for one etcd request, bounded by the request
// timeout.
func (m *Manager) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.timeout)
}

func (m *Manager) setHeld(k lease.Key, h heldLease) {
	m.mu.Lock()
	m.held[k] = h
	m.mu.Unlock()
}

// forget drops what this Manager remembers of holding k.
func (m *Manager) forget(k lease.Key) {
	m.mu.Lock()
	delete(m.held, k)
	m.mu.Unlock()
}

func (m *Manager) getHeld(k lease.Key) (heldLease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.held[k]
	return h, ok
}
