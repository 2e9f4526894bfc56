package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/internal/condition"
	"github.com/weftnet/weft/lease"
)

// Defaults for Options.
const (
	DefaultNetConfPath = "/etc/kube-flannel/net-conf.json"
	// DefaultConfigPollInterval is how often net-conf.json is re-read. A
	// ConfigMap mounted as a volume is updated in place by the kubelet, a
	// minute or so after the ConfigMap changes.
	DefaultConfigPollInterval = 10 * time.Second
	// DefaultRequestTimeout bounds each API request.
	DefaultRequestTimeout = 10 * time.Second
	// waitLogInterval is how often a condition that is waited out (no
	// PodCIDR, a PodCIDR outside the network) is logged again.
	waitLogInterval = time.Minute
)

// Options configure a Manager. Nodes is required; every other field has a
// documented default.
type Options struct {
	// Nodes is the API server's Nodes resource: NewNodeClient(config), or
	// a clientset's CoreV1().Nodes(). Required.
	Nodes NodeClient
	// NodeName is this node's Node object. Default: the NODE_NAME
	// environment variable, which flannel's DaemonSet sets from
	// spec.nodeName.
	NodeName string
	// NetConfPath is net-conf.json, the network config. Default
	// /etc/kube-flannel/net-conf.json, where flannel's DaemonSet mounts it.
	NetConfPath string
	// ConfigPollInterval is how often WatchConfig re-reads NetConfPath.
	// Default 10s.
	ConfigPollInterval time.Duration
	// AnnotationPrefix is the node annotations' prefix. Default
	// "flannel.alpha.coreos.com". A prefix holding a "/" joins names with
	// "-" instead ("example.com/net-backend-data").
	AnnotationPrefix string
	// LeaveNetworkCondition keeps NetworkReady from touching the Node's
	// NetworkUnavailable condition, for a cluster where something else
	// owns it (flanneld's --set-node-network-unavailable=false).
	LeaveNetworkCondition bool
	// AssignPodCIDRs makes Acquire give this node a free PodCIDR when it
	// has none, for clusters whose kube-controller-manager does not
	// allocate them. It needs RBAC "patch" on nodes. See Allocate.
	AssignPodCIDRs bool
	// RequestTimeout bounds each API request. Default 10s.
	RequestTimeout time.Duration
	// ChallengeTimeout is how long the host holding this Node has to
	// answer another host that presents the same node name before that
	// host takes the Node over; a host answered asks again every six
	// timeouts. Default DefaultChallengeTimeout (5s).
	ChallengeTimeout time.Duration
	// Logger receives one line per state change. Default slog.Default().
	Logger *slog.Logger
}

// A Manager is a lease.Manager on this node's Node object and its peers'.
// It is safe for concurrent use. Close stops its informer.
type Manager struct {
	nodes            NodeClient
	node             string
	confPath         string
	poll             time.Duration
	timeout          time.Duration
	challengeTimeout time.Duration
	assign           bool
	leaveCondition   bool
	ann              annotations
	kept             []string // the annotations trim keeps: ann.read(), built once for every node event
	log              *slog.Logger

	startOnce sync.Once
	stop      chan struct{}
	stopOnce  sync.Once
	informer  cache.SharedIndexInformer
	lister    corelisters.NodeLister
	ownNode   chan struct{} // signalled (without blocking) on any change of this node

	networkUp atomic.Bool // NetworkReady was called
	pubMu     sync.Mutex
	published lease.Attrs // what the last Acquire published, for Keep to restore

	idMu          sync.Mutex
	nextChallenge time.Time // when a host answered for this Node may be asked again

	losses, errs, collisions atomic.Int64
	conditions               condition.Set // by operation: why it is waiting or failing now
	logMu                    sync.Mutex    // guards lastLog and skipped
	lastLog                  map[string]time.Time
	skipped                  map[string]string    // nodes skipped as malformed, with why, to warn once per problem
	shared                   map[lease.Key]string // keys several nodes claim, with whom, to warn once per set
}

// New returns a Manager. It starts nothing until a method needs the
// informer.
func New(opts Options) (*Manager, error) {
	if opts.Nodes == nil {
		return nil, errors.New("kube: Options.Nodes is required")
	}
	if opts.NodeName == "" {
		opts.NodeName = os.Getenv("NODE_NAME")
	}
	if opts.NodeName == "" {
		return nil, errors.New("kube: no node name: set Options.NodeName or the NODE_NAME environment variable (in a DaemonSet, from the downward API's spec.nodeName)")
	}
	if opts.NetConfPath == "" {
		opts.NetConfPath = DefaultNetConfPath
	}
	if opts.ConfigPollInterval <= 0 {
		opts.ConfigPollInterval = DefaultConfigPollInterval
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.ChallengeTimeout <= 0 {
		opts.ChallengeTimeout = DefaultChallengeTimeout
	}
	if opts.AnnotationPrefix == "" {
		opts.AnnotationPrefix = DefaultAnnotationPrefix
	}
	if strings.Count(opts.AnnotationPrefix, "/") > 1 || strings.HasPrefix(opts.AnnotationPrefix, "/") {
		return nil, fmt.Errorf("kube: AnnotationPrefix %q: an annotation key holds at most one \"/\", after a DNS name", opts.AnnotationPrefix)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Manager{
		nodes: opts.Nodes, node: opts.NodeName, confPath: opts.NetConfPath, poll: opts.ConfigPollInterval,
		timeout: opts.RequestTimeout, challengeTimeout: opts.ChallengeTimeout, assign: opts.AssignPodCIDRs, leaveCondition: opts.LeaveNetworkCondition, ann: annotations{opts.AnnotationPrefix},
		kept: annotations{opts.AnnotationPrefix}.read(),
		log:  opts.Logger.With("component", "kube", "node", opts.NodeName),
		stop: make(chan struct{}), ownNode: make(chan struct{}, 1),
		lastLog: map[string]time.Time{}, skipped: map[string]string{}, shared: map[lease.Key]string{},
	}, nil
}

// Close stops the informer, and implements io.Closer, as
// lease/etcd.Manager does; it never fails, and a second call does
// nothing. The Manager must not be used afterwards.
func (m *Manager) Close() error {
	m.stopOnce.Do(func() { close(m.stop) })
	return nil
}

// Node implements lease.Manager: the name of this node's Node object.
func (m *Manager) Node() string { return m.node }

// Condition implements lease.ConditionReporter: Stats().Condition.
func (m *Manager) Condition() string { return m.conditions.String() }

// Stats are a Manager's counters since New, for metrics, and its current
// condition, for readiness output.
type Stats struct {
	Losses int64 // leases lost: the node's PodCIDR changed or the node was deleted
	Errors int64 // failed API requests, each retried
	// Collisions counts claims of another host presenting this node's
	// name that this one answered, keeping the Node.
	Collisions int64
	// Condition says what the Manager is waiting for or why requests are
	// failing right now, e.g. "waiting for PodCIDR"; "" when nothing is.
	Condition string
}

// Stats returns the counters and the current condition.
func (m *Manager) Stats() Stats {
	return Stats{Losses: m.losses.Load(), Errors: m.errs.Load(), Collisions: m.collisions.Load(), Condition: m.conditions.String()}
}

// setCondition records why operation what is waiting or failing, or clears
// it with "".
func (m *Manager) setCondition(what, cond string) { m.conditions.Set(what, cond) }

// logEvery logs msg at most once per interval for key, so that a
// condition waited out for hours costs a line a minute, not one per retry.
func (m *Manager) logEvery(key string, interval time.Duration, level slog.Level, msg string, args ...any) {
	m.logMu.Lock()
	last, ok := m.lastLog[key]
	due := !ok || time.Since(last) >= interval
	if due {
		m.lastLog[key] = time.Now()
	}
	m.logMu.Unlock()
	if due {
		m.log.Log(context.Background(), level, msg, args...)
	}
}

// forgetLog lets the next logEvery for key log at once: the condition ended.
func (m *Manager) forgetLog(key string) {
	m.logMu.Lock()
	delete(m.lastLog, key)
	m.logMu.Unlock()
}

// apiError counts a failed request and makes it the current condition. A
// request cut short by its caller's context ending (a shutdown, a wait
// given up) is no failure of the API server's, and is not counted.
func (m *Manager) apiError(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	m.errs.Add(1)
	m.setCondition("api:"+what, "apiserver: "+what+": "+err.Error())
}

// apiOK clears a request's failure condition.
func (m *Manager) apiOK(what string) { m.setCondition("api:"+what, "") }

// request returns a context bounded by the request timeout.
func (m *Manager) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.timeout)
}

// start runs the shared Node informer, once. Its cache keeps only what this
// package reads of each Node (see trim): at thousands of nodes, full Node
// objects with their status and image lists would be most of the agent's
// memory.
func (m *Manager) start() {
	m.startOnce.Do(func() {
		lw := &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				return m.nodes.List(ctx, opts)
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				return m.nodes.Watch(ctx, opts)
			},
		}
		m.informer = cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, m.nodes), &corev1.Node{}, 0, cache.Indexers{})
		m.informer.SetTransform(m.trim)
		m.lister = corelisters.NewNodeLister(m.informer.GetIndexer())
		m.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			m.apiError("watch nodes", err)
		})
		m.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { m.nodeEvent(obj) },
			UpdateFunc: func(_, obj any) { m.nodeEvent(obj) },
			DeleteFunc: func(obj any) { m.nodeEvent(obj) },
		})
		go m.informer.RunWithContext(m.stopCtx())
	})
}

// nodeEvent notes that the informer is delivering, and wakes waiters on
// this node's Node.
func (m *Manager) nodeEvent(obj any) {
	m.apiOK("watch nodes")
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if n, ok := obj.(*corev1.Node); ok && n.Name == m.node {
		select {
		case m.ownNode <- struct{}{}:
		default:
		}
	}
}

// stopCtx returns a context done when the Manager is closed.
func (m *Manager) stopCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-m.stop
		cancel()
	}()
	return ctx
}

// errClosed is returned by methods of a closed Manager.
var errClosed = errors.New("kube: manager closed")

// bind returns ctx, also cancelled when the Manager is closed.
func (m *Manager) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// closedOr returns errClosed if the Manager was closed, else err.
func (m *Manager) closedOr(err error) error {
	select {
	case <-m.stop:
		return errClosed
	default:
		return err
	}
}

// syncWarnAfter is how long the informer's first listing may take before
// the wait is logged and becomes the condition.
var syncWarnAfter = 30 * time.Second

// synced starts the informer and waits for its first listing. A listing
// that does not come is said, not waited out in silence: a failing request
// sets its own condition, but a client whose watch never delivers (one
// that cannot stream a list, see NodeClient) fails no request at all.
func (m *Manager) synced(ctx context.Context) error {
	m.start()
	ctx, cancel := m.bind(ctx)
	defer cancel()
	warn := time.AfterFunc(syncWarnAfter, func() {
		if m.informer.HasSynced() {
			return
		}
		cond := fmt.Sprintf("the list of Nodes has not arrived after %v", syncWarnAfter)
		m.setCondition("api:watch nodes", cond)
		if m.informer.HasSynced() {
			m.apiOK("watch nodes") // it arrived meanwhile
			return
		}
		m.logEvery("sync", waitLogInterval, slog.LevelWarn, cond+"; waiting. If no request fails, the NodeClient may not stream a list through a watch: see kube.NodeClient")
	})
	defer warn.Stop()
	if !cache.WaitForCacheSync(ctx.Done(), m.informer.HasSynced) {
		return m.closedOr(ctx.Err())
	}
	m.apiOK("watch nodes")
	return nil
}

// trim keeps of a Node what this package reads: name, UID,
// resourceVersion, creation time, the annotations it reads, the PodCIDRs, and for this
// node alone its conditions and host claim.
func (m *Manager) trim(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone; its object was trimmed on the way in
	}
	out := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, CreationTimestamp: n.CreationTimestamp},
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
	}
	for _, k := range m.kept {
		if v, ok := n.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = bound(v)
		}
	}
	if n.Name == m.node {
		out.Status.Conditions = n.Status.Conditions
		if v, ok := n.Annotations[m.ann.key(annHostClaim)]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[m.ann.key(annHostClaim)] = v
		}
	}
	return out, nil
}

// Config implements lease.Manager: net-conf.json, parsed.
func (m *Manager) Config(context.Context) (lease.Config, error) {
	data, err := os.ReadFile(m.confPath)
	if err != nil {
		return lease.Config{}, fmt.Errorf("kube: network config: %w", err)
	}
	c, err := lease.ParseConfig(data)
	if err != nil {
		return lease.Config{}, fmt.Errorf("kube: network config %s: %w", m.confPath, err)
	}
	return c, nil
}

// WatchConfig implements lease.Manager. It re-reads net-conf.json every
// ConfigPollInterval and sends it when it changed. A file that is missing
// or does not parse is logged, with the file named, and waited out.
func (m *Manager) WatchConfig(ctx context.Context, ch chan<- lease.Config) error {
	var last []byte
	sent := false
	t := time.NewTicker(m.poll)
	defer t.Stop()
	for {
		data, err := os.ReadFile(m.confPath)
		if err == nil && (!sent || string(data) != string(last)) {
			var c lease.Config
			if c, err = lease.ParseConfig(data); err == nil {
				m.setCondition("config", "")
				m.forgetLog("config")
				for _, u := range c.Unknown {
					m.log.Warn("net-conf.json has a field flannel does not know; ignored", "path", m.confPath, "field", u)
				}
				select {
				case ch <- c:
				case <-ctx.Done():
					return ctx.Err()
				}
				last, sent = data, true
			} else {
				err = fmt.Errorf("%s: %w", m.confPath, err)
			}
		}
		if err != nil {
			cond := "waiting for the network config: " + err.Error()
			if sent {
				cond = "" // the last good config stays in force
			}
			m.setCondition("config", cond)
			m.logEvery("config", waitLogInterval, slog.LevelWarn, "cannot use the network config; keeping the last good one, if any",
				"path", m.confPath, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

var (
	_ lease.Manager           = (*Manager)(nil)
	_ lease.ConditionReporter = (*Manager)(nil)
	_ lease.ReadyNotifier     = (*Manager)(nil)
	_ lease.Republisher       = (*Manager)(nil)
)

var _ io.Closer = (*Manager)(nil)
