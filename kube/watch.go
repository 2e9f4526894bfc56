package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/lease"
)

// maxBatch bounds how many queued nodes one Batch covers.
const maxBatch = 512

// WatchLeases implements lease.Manager. Every node that publishes a lease
// (its kube-subnet-manager annotation is "true" and it has a PodCIDR) is a
// lease, keyed by its PodCIDRs for the families net-conf.json enables;
// the others are not peers yet. A node whose annotations or PodCIDRs are
// malformed is skipped with a warning naming the node and what is wrong.
//
// Changes come from the shared informer through a work queue keyed by node
// name, and each node is handled level-based: its lease as the cache holds
// it now is compared with the one last sent. A node whose PodCIDR changes
// is a Removed and an Added event in one batch; one deleted is a Removed
// event.
//
// A lease source sends one lease per key, so that no node can displace
// another by claiming its subnet: when several Nodes have the same
// PodCIDRs (a misconfiguration, or a node that set its own), the lease of
// the oldest Node, by creation time and then name, is the one sent, and
// the others are warned about, naming every Node. When it goes, the next
// oldest's is sent in its place.
func (m *Manager) WatchLeases(ctx context.Context, ch chan<- lease.Batch) error {
	if err := m.synced(ctx); err != nil {
		return err
	}
	ctx, cancel := m.bind(ctx)
	defer cancel()
	conf, err := m.Config(ctx)
	if err != nil {
		conf = lease.Config{EnableIPv4: true, EnableIPv6: true}
	}

	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	reg, err := m.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, cur any) { enqueue(cur) },
		DeleteFunc: enqueue,
	})
	if err != nil {
		return err
	}
	defer m.informer.RemoveEventHandler(reg)

	// The snapshot is the cache as it is now; the queue already holds, or
	// will, every node the handler is told of, and handling a node whose
	// lease the snapshot already sent sends nothing.
	view := newNodeView()
	nodes, err := m.lister.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if l, ok := m.leaseOf(n, conf); ok {
			view.claim(n.Name, l)
		}
	}
	snapshot := view.sendAll()
	for k := range view.others {
		m.warnShared(k, view)
	}
	sortEvents(snapshot)
	if err := ctxutil.Send(ctx, ch, lease.Batch{Snapshot: true, Events: snapshot}); err != nil {
		return m.closedOr(err)
	}

	for {
		name, shutdown := queue.Get()
		if shutdown {
			return m.closedOr(ctx.Err())
		}
		events := m.nodeEvents(name, conf, view)
		queue.Done(name)
		for n := 1; n < maxBatch && queue.Len() > 0; n++ {
			name, shutdown := queue.Get()
			if shutdown {
				break
			}
			events = append(events, m.nodeEvents(name, conf, view)...)
			queue.Done(name)
		}
		if len(events) > 0 {
			if err := ctxutil.Send(ctx, ch, lease.Batch{Events: events}); err != nil {
				return m.closedOr(err)
			}
		}
	}
}

// nodeEvents compares node name's lease now with the one last sent,
// records it in view, and returns the events that tell the difference.
func (m *Manager) nodeEvents(name string, conf lease.Config, view *nodeView) []lease.Event {
	var cur lease.Lease
	has := false
	n, err := m.lister.Get(name)
	switch {
	case err == nil:
		cur, has = m.leaseOf(n, conf)
	case !apierrors.IsNotFound(err):
		return nil // the cache answers only found or not
	}
	if !has {
		m.logMu.Lock()
		delete(m.skipped, name)
		m.logMu.Unlock()
	}
	events, shared := view.update(name, cur, has)
	for _, k := range shared {
		m.warnShared(k, view)
	}
	return events
}

// warnShared warns, once per set of nodes, that several nodes have the
// PodCIDRs of key k, naming the one whose lease is a peer.
func (m *Manager) warnShared(k lease.Key, view *nodeView) {
	names := view.claimants(k)
	m.logMu.Lock()
	defer m.logMu.Unlock()
	was, warned := m.shared[k]
	now := strings.Join(names, ",")
	if len(names) < 2 {
		delete(m.shared, k)
		return
	}
	if warned && was == now {
		return
	}
	m.shared[k] = now
	m.log.Warn("several nodes have the same PodCIDRs; only the oldest Node is a peer, and the others are unreachable until their PodCIDRs are fixed",
		"podcidrs", k, "peer", view.holders[k], "nodes", names)
}

// leaseOf returns the lease a node publishes, if it publishes a usable one.
// A malformed one is warned about once per distinct problem, naming the
// node.
func (m *Manager) leaseOf(n *corev1.Node, conf lease.Config) (lease.Lease, bool) {
	if n.Annotations[m.ann.key(annSubnetManager)] != "true" {
		return lease.Lease{}, false
	}
	cidrs, err := podCIDRs(n)
	if err == nil && !cidrs.IsValid() {
		return lease.Lease{}, false
	}
	var attrs lease.Attrs
	if err == nil {
		attrs, err = m.ann.decode(n.Name, n.Annotations)
	}
	key := keyFor(cidrs, conf)
	if err == nil && !key.IsValid() {
		return lease.Lease{}, false // none of the families in use here
	}
	m.logMu.Lock()
	was, warned := m.skipped[n.Name]
	if err != nil {
		m.skipped[n.Name] = err.Error()
	} else {
		delete(m.skipped, n.Name)
	}
	m.logMu.Unlock()
	if errors.Is(err, lease.ErrTooLarge) && key.IsValid() {
		// Reported by admission, by key and rule, with the other
		// rejections; nothing of the annotation is kept.
		return lease.Lease{Key: key, Seniority: seniority(n), Invalid: fmt.Sprintf("node %s: %v", n.Name, err)}, true
	}
	if err != nil {
		if !warned || was != err.Error() {
			m.log.Warn("skipping a peer node with a malformed lease", "peer", n.Name, "err", err)
		}
		return lease.Lease{}, false
	}
	// The Node's creation time ranks its lease for peer admission: every
	// node reads it alike, and the node's own credentials cannot change
	// it, so a node that claims an older node's VTEP MAC or address loses.
	return lease.Lease{Key: key, Attrs: attrs, Seniority: seniority(n)}, true
}

// sortEvents orders events by key, as lease.Diff does.
func sortEvents(events []lease.Event) {
	slices.SortFunc(events, func(a, b lease.Event) int { return a.Lease.Key.Compare(b.Lease.Key) })
}
