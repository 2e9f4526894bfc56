package kube

import (
	"context"
	"slices"

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
	view := map[string]lease.Lease{}
	nodes, err := m.lister.List(labels.Everything())
	if err != nil {
		return err
	}
	snapshot := make([]lease.Event, 0, len(nodes))
	for _, n := range nodes {
		if l, ok := m.leaseOf(n, conf); ok {
			view[n.Name] = l
			snapshot = append(snapshot, lease.Event{Type: lease.Added, Lease: l})
		}
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
func (m *Manager) nodeEvents(name string, conf lease.Config, view map[string]lease.Lease) []lease.Event {
	var cur lease.Lease
	has := false
	n, err := m.lister.Get(name)
	switch {
	case err == nil:
		cur, has = m.leaseOf(n, conf)
	case !apierrors.IsNotFound(err):
		return nil // the cache answers only found or not
	}
	prev, had := view[name]
	if has {
		view[name] = cur
	} else {
		delete(view, name)
		m.logMu.Lock()
		delete(m.skipped, name)
		m.logMu.Unlock()
	}
	switch {
	case had && has && prev.Key == cur.Key:
		if !prev.Attrs.Equal(cur.Attrs) || prev.Seniority != cur.Seniority {
			return []lease.Event{{Type: lease.Changed, Lease: cur, Prev: prev}}
		}
		return nil
	case had && has:
		return []lease.Event{{Type: lease.Removed, Lease: prev}, {Type: lease.Added, Lease: cur}}
	case had:
		return []lease.Event{{Type: lease.Removed, Lease: prev}}
	case has:
		return []lease.Event{{Type: lease.Added, Lease: cur}}
	}
	return nil
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
	if err != nil {
		if !warned || was != err.Error() {
			m.log.Warn("skipping a peer node with a malformed lease", "peer", n.Name, "err", err)
		}
		return lease.Lease{}, false
	}
	// The Node's creation time ranks its lease for peer admission: every
	// node reads it alike, and the node's own credentials cannot change
	// it, so a node that claims an older node's VTEP MAC or address loses.
	return lease.Lease{Key: key, Attrs: attrs, Seniority: n.CreationTimestamp.Unix()}, true
}

// sortEvents orders events by key, as lease.Diff does.
func sortEvents(events []lease.Event) {
	slices.SortFunc(events, func(a, b lease.Event) int { return a.Lease.Key.Compare(b.Lease.Key) })
}
