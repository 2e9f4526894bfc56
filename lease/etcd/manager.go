package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/weftnet/weft/internal/condition"
	"github.com/weftnet/weft/internal/ctxutil"
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

func newClient(opts Options) (*clientv3.Client, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd: Options.Endpoints is empty: name at least one etcd client URL")
	}
	var tlsConfig *tls.Config
	if opts.CAFile != "" || opts.CertFile != "" || opts.KeyFile != "" {
		info := transport.TLSInfo{CertFile: opts.CertFile, KeyFile: opts.KeyFile, TrustedCAFile: opts.CAFile}
		var err error
		if tlsConfig, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd: TLS files (CA %q, cert %q, key %q): %w", opts.CAFile, opts.CertFile, opts.KeyFile, err)
		}
	}
	dialOptions := []grpc.DialOption{
		// Fixed flow-control windows: gRPC otherwise grows them with
		// the bandwidth it sees, up to 16 MiB a stream, and a
		// response refused for its size (see MaxRecvBytes) is
		// buffered up to the window before it is refused. A
		// control plane's responses are small; 1 MiB keeps a LAN's
		// round trip from limiting them.
		grpc.WithInitialWindowSize(recvWindow),
		grpc.WithInitialConnWindowSize(recvWindow),
		// gRPC's default reconnect backoff grows to two minutes; an
		// agent should be back within seconds of etcd returning.
		grpc.WithConnectParams(grpc.ConnectParams{
			// At most 2s (2.4s with jitter) from etcd's return to a
			// connection, so that a wiped store is found and this
			// node's lease re-asserted within 5s.
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if opts.Username != "" && opts.Password != "" {
		// Not clientv3's Username and Password: with them, its New
		// logs in before it returns, and fails when etcd is down.
		dialOptions = append(dialOptions, newTokenAuth(opts.Username, opts.Password).dialOptions()...)
	}
	// Without a DialTimeout and a blocking dial option, clientv3.New
	// does not connect: gRPC connects at the first request.
	c, err := clientv3.New(clientv3.Config{
		Endpoints: opts.Endpoints,
		TLS:       tlsConfig,
		// A connection can die without a word: the node's address
		// changed (DHCP, a NIC replaced), or etcd's host lost power.
		// Pings find it within keepAliveTime+keepAliveTimeout, and the
		// client dials again, from the node's current address; without
		// them, TCP's retransmissions take a quarter of an hour. Only
		// while a stream is open: etcd refuses pings on a connection with
		// none (too_many_pings), and pings more often than every 5s.
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		PermitWithoutStream:  false,
		Logger:               zap.NewNop(), // this package logs what matters through slog
		MaxCallRecvMsgSize:   MaxRecvBytes,
		DialOptions:          dialOptions,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: client for %v: %w", opts.Endpoints, err)
	}
	return c, nil
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

// record is one subnet key as read from etcd. Its value is kept raw: most
// callers need only the subnet, and decoding thousands of values would
// dominate Acquire.
type record struct {
	key       lease.Key
	value     []byte
	etcdLease clientv3.LeaseID
	modRev    int64
	createRev int64 // its seniority (lease.Lease.Seniority)
}

// parseKV reads a key under subnets/. It fails only when the key's name is
// not a subnet key; the value is not looked at.
func (m *Manager) parseKV(kv *mvccpb.KeyValue) (record, error) {
	name := strings.TrimPrefix(string(kv.Key), m.subnetsPrefix())
	k, err := lease.ParseKey(name)
	if err != nil {
		return record{}, err
	}
	return record{key: k, value: kv.Value, etcdLease: clientv3.LeaseID(kv.Lease), modRev: kv.ModRevision, createRev: kv.CreateRevision}, nil
}

// parseListing splits a listing of the whole prefix into the raw config and
// the subnet records. Keys that are not subnet keys are logged and skipped.
func (m *Manager) parseListing(kvs []*mvccpb.KeyValue) (config []byte, hasConfig bool, records []record) {
	// Sized once: grown by doubling, tens of thousands of records would
	// be held twice over while the last growth copies them.
	records = make([]record, 0, len(kvs))
	for _, kv := range kvs {
		switch key := string(kv.Key); {
		case key == m.configKey():
			config, hasConfig = kv.Value, true
		case strings.HasPrefix(key, m.subnetsPrefix()):
			r, err := m.parseKV(kv)
			if err != nil {
				m.log.Warn("skipping etcd key that is not a subnet key", "key", key, "err", err)
				continue
			}
			records = append(records, r)
		}
	}
	return config, hasConfig, records
}

// parseConfig parses the config value, naming the key in errors.
func (m *Manager) parseConfig(raw []byte, ok bool) (lease.Config, error) {
	if !ok {
		return lease.Config{}, fmt.Errorf("%w at %s: write one, e.g. etcdctl put %s '{\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}'",
			ErrNoConfig, m.configKey(), m.configKey())
	}
	c, err := lease.ParseConfig(raw)
	if err != nil {
		return lease.Config{}, fmt.Errorf("etcd key %s: %w", m.configKey(), err)
	}
	return c, nil
}

// request returns a context for one etcd request, bounded by the request
// timeout.
func (m *Manager) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.timeout)
}

// Config returns the network configuration stored at <prefix>/config.
func (m *Manager) Config(ctx context.Context) (lease.Config, error) {
	rctx, cancel := m.request(ctx)
	defer cancel()
	resp, err := m.client.Get(rctx, m.configKey())
	if err != nil {
		return lease.Config{}, fmt.Errorf("etcd: read %s: %w", m.configKey(), err)
	}
	if len(resp.Kvs) == 0 {
		return m.parseConfig(nil, false)
	}
	return m.parseConfig(resp.Kvs[0].Value, true)
}

// retrier paces retries of a failing operation with capped, jittered
// exponential backoff, and logs only when the failure changes or recovers,
// so that a long outage costs two log lines, not one per attempt. A wait
// ends early when the connection to etcd comes back after the attempt
// began: an outage must not leave a loop asleep for its longest backoff
// after etcd is back, when a wiped store is waiting to be told this
// node's lease.
type retrier struct {
	m        *Manager
	log      *slog.Logger
	what     string
	delay    time.Duration
	lastErr  string
	failures int
	wake     <-chan struct{} // closed at the first reconnection since the current attempt began
}

const (
	retryMin = 100 * time.Millisecond
	retryMax = 10 * time.Second
)

// fail records err and waits before the next attempt. It returns ctx.Err()
// if ctx ends first.
func (r *retrier) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: not a failure to report
	}
	r.failures++
	r.m.errs.Add(1)
	cond := "etcd unreachable: " + err.Error()
	if answered(err) {
		cond = err.Error() // etcd answered; the trouble is what it holds or whom it lets in
	}
	r.m.setCondition(r.what, cond)
	if msg := err.Error(); msg != r.lastErr {
		if errors.Is(err, ErrIdentityCollision) || refused(err) {
			r.log.Error(r.what+" is waiting", "err", err)
		} else {
			r.log.Warn(r.what+" failed; retrying", "err", err, "attempt", r.failures)
		}
		r.lastErr = msg
	}
	if r.delay == 0 {
		r.delay = retryMin
	} else {
		r.delay = min(2*r.delay, retryMax)
	}
	return r.sleep(ctx, r.delay/2+rand.N(r.delay/2+1))
}

// failFor records err like fail, and waits about d before the next
// attempt.
func (r *retrier) failFor(ctx context.Context, err error, d time.Duration) error {
	if werr := r.fail(ctx, err); werr != nil {
		return werr
	}
	return r.sleep(ctx, d*3/4+rand.N(d/2+1))
}

// sleep waits d, or until ctx is done or the connection comes back; then
// the next attempt begins.
func (r *retrier) sleep(ctx context.Context, d time.Duration) error {
	if err := ctxutil.SleepUntil(ctx, d, r.wake); err != nil {
		return err
	}
	r.wake = r.m.history.reconnected()
	return nil
}

// ok records success, logging recovery after failures.
func (r *retrier) ok() {
	if r.failures > 0 {
		r.log.Info(r.what+" recovered", "after_attempts", r.failures)
		r.m.setCondition(r.what, "")
	}
	*r = retrier{m: r.m, log: r.log, what: r.what, wake: r.m.history.reconnected()}
}

// answered reports whether err is etcd's answer, not the want of one: a
// condition that names it says so, rather than "etcd unreachable".
func answered(err error) bool {
	return errors.Is(err, ErrNoConfig) || errors.Is(err, lease.ErrInvalidConfig) || errors.Is(err, lease.ErrOutOfSubnets) ||
		errors.Is(err, ErrIdentityCollision) || refused(err)
}

// refused reports whether etcd refused this node's credentials or their
// rights: the operator must act, so it is logged as an error.
func refused(err error) bool {
	return errors.Is(err, ErrAuthentication) || errors.Is(rpctypes.Error(err), rpctypes.ErrPermissionDenied)
}

func (m *Manager) retrier(what string) *retrier {
	return &retrier{m: m, log: m.log, what: what, wake: m.history.reconnected()}
}
