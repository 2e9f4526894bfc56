package apitest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
)

// nodeWrites counts the writes to a Node, from now on, as every node's
// watch delivers them.
func nodeWrites(t *testing.T, s *scope, name string) *atomic.Int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.c.admin.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: s.node(name).ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Modified {
				n.Add(1)
			}
		}
	}()
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	return &n
}

// TestKubeIdentityCollision: two hosts run as one Node, with different
// public IPs. The first holds it; the second is not ready, its condition
// naming both addresses and the fix, and the Node's writes stay within a
// bound over a window (no flipping). When the holder is gone, the second
// takes the Node over; a restart of the same host is no collision; a
// holder that comes back to find the Node taken over loses it, loudly.
func TestKubeIdentityCollision(t *testing.T) {
	c := newCluster(t)
	s := c.scope(t, "ident", fmt.Sprintf(netConf16, 108))
	const name = "ident-1"
	s.createNode(name, "10.108.1.0/24")
	const timeout = 500 * time.Millisecond
	short := func(o *kube.Options) { o.ChallengeTimeout = timeout }
	ipA, ipB := attrsFor(1).PublicIP.String(), attrsFor(2).PublicIP.String()

	a := s.manager(name, c.srv.Admin, short)
	la := acquire(t, a, 1)
	actx, stopA := context.WithCancel(context.Background())
	keptA := make(chan error, 1)
	go func() { keptA <- a.Keep(actx, la) }()

	b := s.manager(name, c.srv.Admin, short)
	bctx, stopB := context.WithCancel(context.Background())
	defer stopB()
	got := make(chan error, 1)
	var lb lease.Lease
	go func() {
		var err error
		lb, err = b.Acquire(bctx, lease.AcquireRequest{Attrs: attrsFor(2)})
		got <- err
	}()
	testutil.WaitFor(t, 20*time.Second, "the second host to say it collides", func() bool {
		select {
		case err := <-got:
			// What main did: both hold the Node. Show the flipping.
			writes := nodeWrites(t, s, name)
			go b.Keep(bctx, lb)
			time.Sleep(10 * time.Second)
			t.Fatalf("the second host acquired the Node the first holds (%v, lease %v); then %d writes to the Node in 10 s", err, lb.Key, writes.Load())
		default:
		}
		cond := b.Stats().Condition
		return strings.Contains(cond, ipA) && strings.Contains(cond, ipB)
	})
	cond := b.Stats().Condition
	for _, want := range []string{ipA, ipB, "NODE_NAME", name} {
		if !strings.Contains(cond, want) {
			t.Errorf("the second host's condition %q lacks %q", cond, want)
		}
	}
	t.Logf("second host's condition: %s", cond)

	// The write rate is bounded: a claim and its answer per round of six
	// challenge timeouts. Counted over a window, with room for the
	// round in progress at each end.
	const window = 10 * time.Second
	writes := nodeWrites(t, s, name)
	time.Sleep(window)
	bound := 2 * (int64(window/(6*timeout)) + 2)
	if n := writes.Load(); n > bound {
		t.Errorf("%d writes to the Node in %v, want at most %d", n, window, bound)
	} else {
		t.Logf("%d writes to the Node in %v of collision (bound %d)", n, window, bound)
	}
	if got := s.node(name).Annotations[s.key("public-ip")]; got != ipA {
		t.Errorf("public-ip %q, want the first holder's %s", got, ipA)
	}
	if a.Stats().Collisions == 0 {
		t.Error("the holder counted no collision")
	}
	select {
	case err := <-keptA:
		t.Fatalf("the holder's Keep ended: %v", err)
	default:
	}

	// The holder stops: the second host's next claim goes unanswered, and
	// it takes the Node over.
	stopA()
	<-keptA
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the second host did not take the Node over after the first stopped; condition %q", b.Stats().Condition)
	}
	if got := s.node(name).Annotations[s.key("public-ip")]; got != ipB || lb.Attrs.PublicIP.String() != ipB {
		t.Errorf("after the takeover: public-ip %q, lease %v", got, lb.Attrs.PublicIP)
	}
	if _, has := s.node(name).Annotations[s.key("host-claim")]; has {
		t.Error("the host claim outlived the takeover")
	}

	// The second host's Keep answers; the first, back with the lease it had,
	// finds the Node taken over, asks, is answered, and has lost it.
	kctx, stopKeep := context.WithCancel(context.Background())
	keptB := make(chan error, 1)
	go func() { keptB <- b.Keep(kctx, lb) }()
	a2 := s.manager(name, c.srv.Admin, short)
	if err := a2.Keep(ctxFor(t, 20*time.Second), la); !errors.Is(err, lease.ErrLeaseLost) || !errors.Is(err, lease.ErrIdentityCollision) {
		t.Errorf("the first host's Keep after the takeover: %v, want a loss matching ErrIdentityCollision", err)
	}
	if got := s.node(name).Annotations[s.key("public-ip")]; got != ipB {
		t.Errorf("public-ip %q after the first host came back, want %s", got, ipB)
	}

	// A restart of the holder's host, the same address: no collision, no
	// claim, no write.
	stopKeep()
	<-keptB
	writes = nodeWrites(t, s, name)
	b2 := s.manager(name, c.srv.Admin, short)
	if l := acquire(t, b2, 2); l.Attrs.PublicIP.String() != ipB {
		t.Errorf("the restarted host's lease %v", l.Attrs.PublicIP)
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("the restart of the holder's host wrote the Node %d times", n)
	}
}
