package apitest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/internal/leasetest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/kube/apitest"
	"github.com/weftnet/weft/lease"
)

// cluster is one kube-apiserver shared by the subtests of a test: a start
// costs seconds and, under the race detector, a gigabyte. Subtests keep
// apart by node names and annotation prefix, so that no subtest sees
// another's nodes as peers.
type cluster struct {
	srv   *apitest.Server
	admin kubernetes.Interface
	// proxy is the daemons' only way to the API server, in kube-mode
	// daemon tests (kubeMode).
	proxy *proxy
}

func newCluster(t *testing.T) *cluster {
	s := apitest.Start(t)
	return &cluster{srv: s, admin: kubernetes.NewForConfigOrDie(s.Admin)}
}

// scope is one subtest's share of the cluster.
type scope struct {
	t       *testing.T
	c       *cluster
	prefix  string // annotation prefix
	netConf string // path of net-conf.json
	logs    *testutil.SyncBuffer
}

func (c *cluster) scope(t *testing.T, name, netConf string) *scope {
	path := filepath.Join(t.TempDir(), "net-conf.json")
	if err := os.WriteFile(path, []byte(netConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return &scope{t: t, c: c, prefix: name + ".weft.test", netConf: path, logs: &testutil.SyncBuffer{}}
}

var ctxFor = testutil.Context

// manager returns a kube.Manager for node, as config's user.
func (s *scope) manager(node string, config *rest.Config, opts ...func(*kube.Options)) *kube.Manager {
	s.t.Helper()
	o := kube.Options{
		Nodes: nodeClient(s.t, config), NodeName: node, NetConfPath: s.netConf,
		AnnotationPrefix: s.prefix, ConfigPollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(s.logs, nil)).With("test_node", node),
	}
	for _, f := range opts {
		f(&o)
	}
	m, err := kube.New(o)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { m.Close() })
	return m
}

func (s *scope) createNode(name string, podCIDRs ...string) {
	s.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDRs[0], podCIDRs
	}
	if _, err := s.c.admin.CoreV1().Nodes().Create(ctxFor(s.t, 10*time.Second), n, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scope) node(name string) *corev1.Node {
	s.t.Helper()
	n, err := s.c.admin.CoreV1().Nodes().Get(ctxFor(s.t, 10*time.Second), name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

func (s *scope) patchNode(name, patch string, subresources ...string) {
	s.t.Helper()
	if _, err := s.c.admin.CoreV1().Nodes().Patch(ctxFor(s.t, 10*time.Second), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, subresources...); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scope) key(name string) string { return s.prefix + "/" + name }

func attrsFor(i int) lease.Attrs {
	return lease.Attrs{
		PublicIP:    netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}),
		BackendType: "vxlan",
		BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":"0e:00:00:00:00:%02x"}`, i)),
	}
}

func acquire(t *testing.T, m *kube.Manager, i int) lease.Lease {
	t.Helper()
	l, err := m.Acquire(ctxFor(t, 30*time.Second), lease.AcquireRequest{Attrs: attrsFor(i)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustKey(t *testing.T, s string) lease.Key {
	k, err := lease.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const netConf16 = `{"Network": "10.%d.0.0/16", "Backend": {"Type": "vxlan"}}`

func TestKube(t *testing.T) {
	c := newCluster(t)
	t.Logf("kube-apiserver healthy after %v", c.srv.StartTime)

	// Seed 004: the agent starts on a node without a PodCIDR, waits (it
	// does not fail), says so, and proceeds as soon as one is assigned.
	t.Run("PodCIDRAssignedLater", func(t *testing.T) {
		t.Parallel()
		s := c.scope(t, "late", fmt.Sprintf(netConf16, 101))
		s.createNode("late-1")
		m := s.manager("late-1", c.srv.Admin)
		got := make(chan lease.Lease, 1)
		go func() {
			l, err := m.Acquire(ctxFor(t, time.Minute), lease.AcquireRequest{Attrs: attrsFor(1)})
			if err != nil {
				t.Error(err)
			}
			got <- l
		}()
		testutil.WaitFor(t, 20*time.Second, "the wait to show", func() bool { return m.Stats().Condition == "waiting for PodCIDR" })
		if !strings.Contains(s.logs.String(), "kubectl patch node late-1") {
			t.Errorf("no actionable message:\n%s", s.logs)
		}
		s.patchNode("late-1", `{"spec":{"podCIDR":"10.101.5.0/24","podCIDRs":["10.101.5.0/24"]}}`)
		select {
		case l := <-got:
			if l.Key != mustKey(t, "10.101.5.0-24") {
				t.Errorf("lease %v", l.Key)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Acquire did not proceed after the PodCIDR was assigned")
		}
		if cond := m.Stats().Condition; cond != "" {
			t.Errorf("condition after the lease: %q", cond)
		}
	})

	// The annotations a node publishes are read back by a peer as the same
	// attributes, under a prefix holding a "/" too; an overwrite
	// annotation replaces the public IP peers see; Keep restores edited
	// annotations and sets NetworkUnavailable=False.
	for _, prefix := range []string{"", "example.com/rt"} {
		t.Run("AnnotationRoundTrip"+strings.ReplaceAll(prefix, "/", "_"), func(t *testing.T) {
			t.Parallel()
			name := "rt" + fmt.Sprint(len(prefix))
			s := c.scope(t, name, fmt.Sprintf(netConf16, 102+len(prefix)))
			if prefix != "" {
				s.prefix = prefix + fmt.Sprint(len(prefix))
			}
			sub := fmt.Sprintf("10.%d.1.0/24", 102+len(prefix))
			s.createNode(name+"-a", sub)
			a := s.manager(name+"-a", c.srv.Admin)
			la := acquire(t, a, 1)
			n := s.node(name + "-a")
			sep := "/"
			if prefix != "" {
				sep = "-"
			}
			for _, k := range []string{"backend-data", "backend-type", "public-ip", "kube-subnet-manager"} {
				if _, ok := n.Annotations[s.prefix+sep+k]; !ok {
					t.Errorf("annotation %s%s%s missing: %v", s.prefix, sep, k, n.Annotations)
				}
			}
			peer := leasetest.Watch(t, s.manager(name+"-peer", c.srv.Admin))
			peer.WaitLeases(t, "the lease to be seen", func(m map[lease.Key]lease.Attrs) bool { return m[la.Key].Equal(la.Attrs) })

			// An admin's overwrite: peers see it.
			s.patchNode(name+"-a", fmt.Sprintf(`{"metadata":{"annotations":{%q:"203.0.113.5"}}}`, s.prefix+sep+"public-ip-overwrite"))
			peer.WaitLeases(t, "the overwrite to be seen", func(m map[lease.Key]lease.Attrs) bool {
				return m[la.Key].PublicIP == netip.MustParseAddr("203.0.113.5")
			})

			// Keep restores an edited annotation.
			ctx, cancel := context.WithCancel(context.Background())
			kept := make(chan error, 1)
			go func() { kept <- a.Keep(ctx, la) }()
			defer func() {
				cancel()
				if err := <-kept; !errors.Is(err, context.Canceled) {
					t.Errorf("Keep returned %v", err)
				}
			}()
			a.NetworkReady()
			s.patchNode(name+"-a", fmt.Sprintf(`{"metadata":{"annotations":{%q:"{\"VNI\":9}"}}}`, s.prefix+sep+"backend-data"))
			testutil.WaitFor(t, 20*time.Second, "the annotation to be restored and the condition set", func() bool {
				n := s.node(name + "-a")
				ok := false
				for _, c := range n.Status.Conditions {
					ok = ok || c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse
				}
				return ok && n.Annotations[s.prefix+sep+"backend-data"] == string(attrsFor(1).BackendData)
			})
		})
	}

	// Peers: added, updated, deleted; a node without kube-subnet-manager
	// is no peer until it has it; a malformed node is skipped.
	t.Run("Peers", func(t *testing.T) {
		t.Parallel()
		s := c.scope(t, "peers", fmt.Sprintf(netConf16, 104))
		s.createNode("peers-self", "10.104.1.0/24")
		self := s.manager("peers-self", c.srv.Admin)
		acquire(t, self, 1)
		w := leasetest.Watch(t, self)
		s.createNode("peers-b", "10.104.2.0/24")
		mb := s.manager("peers-b", c.srv.Admin)
		lb := acquire(t, mb, 2)
		w.WaitLeases(t, "peer b", func(m map[lease.Key]lease.Attrs) bool { return len(m) == 2 && m[lb.Key].Equal(lb.Attrs) })

		// Updated: b publishes a new public IP.
		moved := attrsFor(22)
		if _, err := mb.Acquire(ctxFor(t, 30*time.Second), lease.AcquireRequest{Attrs: moved}); err != nil {
			t.Fatal(err)
		}
		w.WaitLeases(t, "b's new address", func(m map[lease.Key]lease.Attrs) bool { return m[lb.Key].PublicIP == moved.PublicIP })

		// Not yet a peer, then a peer.
		s.createNode("peers-c", "10.104.3.0/24")
		s.patchNode("peers-c", fmt.Sprintf(`{"metadata":{"annotations":{%q:"vxlan",%q:"192.0.2.3"}}}`, s.key("backend-type"), s.key("public-ip")), "status")
		time.Sleep(500 * time.Millisecond)
		if _, ok := w.Leases()[mustKey(t, "10.104.3.0-24")]; ok {
			t.Fatal("a node without kube-subnet-manager is a peer")
		}
		s.patchNode("peers-c", fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}}}`, s.key("kube-subnet-manager")), "status")
		w.WaitLeases(t, "c to join", func(m map[lease.Key]lease.Attrs) bool { _, ok := m[mustKey(t, "10.104.3.0-24")]; return ok })

		// Malformed: skipped, with a warning naming it; then fixed.
		s.patchNode("peers-c", fmt.Sprintf(`{"metadata":{"annotations":{%q:"not-an-ip"}}}`, s.key("public-ip")), "status")
		w.WaitLeases(t, "c to be dropped", func(m map[lease.Key]lease.Attrs) bool { _, ok := m[mustKey(t, "10.104.3.0-24")]; return !ok })
		if !strings.Contains(s.logs.String(), "peer=peers-c") || !strings.Contains(s.logs.String(), "not-an-ip") {
			t.Errorf("no warning names the node and the value:\n%s", s.logs)
		}

		// Deleted.
		if err := c.admin.CoreV1().Nodes().Delete(ctxFor(t, 10*time.Second), "peers-b", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		w.WaitLeases(t, "b to go", func(m map[lease.Key]lease.Attrs) bool { _, ok := m[lb.Key]; return !ok && len(m) == 1 })
	})

	// Dual-stack: a node re-created with a new IPv6 PodCIDR and the same
	// IPv4 one is seen with the new IPv6 subnet; the node's own lease is
	// lost (its PodCIDRs changed) and acquired again.
	t.Run("DualStackOneFamily", func(t *testing.T) {
		t.Parallel()
		s := c.scope(t, "dual", `{"Network": "10.105.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:105::/56", "Backend": {"Type": "vxlan"}}`)
		s.createNode("dual-a", "10.105.1.0/24", "fd00:105:0:1::/64")
		s.createNode("dual-self", "10.105.9.0/24", "fd00:105:0:9::/64")
		a := s.manager("dual-a", c.srv.Admin)
		dualAttrs := attrsFor(1)
		dualAttrs.PublicIPv6, dualAttrs.BackendV6Data = netip.MustParseAddr("2001:db8::1"), json.RawMessage(`{"VNI":1,"VtepMAC":"0e:00:00:00:01:01"}`)
		la, err := a.Acquire(ctxFor(t, 30*time.Second), lease.AcquireRequest{Attrs: dualAttrs})
		if err != nil {
			t.Fatal(err)
		}
		if la.Key != mustKey(t, "10.105.1.0-24&fd00:105:0:1::-64") {
			t.Fatalf("dual-stack lease %v", la.Key)
		}
		w := leasetest.Watch(t, s.manager("dual-self", c.srv.Admin))
		w.WaitLeases(t, "a", func(m map[lease.Key]lease.Attrs) bool { _, ok := m[la.Key]; return ok })

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		kept := make(chan error, 1)
		go func() { kept <- a.Keep(ctx, la) }()
		if err := c.admin.CoreV1().Nodes().Delete(ctxFor(t, 10*time.Second), "dual-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		s.createNode("dual-a", "10.105.1.0/24", "fd00:105:0:2::/64")
		select {
		case err := <-kept:
			if !errors.Is(err, lease.ErrLeaseLost) {
				t.Fatalf("Keep returned %v, want ErrLeaseLost", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Keep did not notice the re-created node")
		}
		la2, err := a.Acquire(ctxFor(t, 30*time.Second), lease.AcquireRequest{Attrs: dualAttrs})
		if err != nil {
			t.Fatal(err)
		}
		if la2.Key != mustKey(t, "10.105.1.0-24&fd00:105:0:2::-64") {
			t.Fatalf("lease after re-creation %v", la2.Key)
		}
		w.WaitLeases(t, "the new IPv6 subnet", func(m map[lease.Key]lease.Attrs) bool {
			_, old := m[la.Key]
			_, cur := m[la2.Key]
			return !old && cur
		})
	})

	// A node whose address changed republishes it in place: the same
	// lease, the new public IP in its annotation, which Keep then
	// restores; a node whose Node was deleted meanwhile has lost it.
	t.Run("Republish", func(t *testing.T) {
		t.Parallel()
		s := c.scope(t, "repub", fmt.Sprintf(netConf16, 107))
		s.createNode("repub-1", "10.107.1.0/24")
		m := s.manager("repub-1", c.srv.Admin)
		l := acquire(t, m, 1)
		moved := attrsFor(2)
		l2, err := m.Republish(ctxFor(t, 20*time.Second), l, moved)
		if err != nil {
			t.Fatal(err)
		}
		if l2.Key != l.Key || l2.Attrs.PublicIP != moved.PublicIP {
			t.Fatalf("republished %+v", l2)
		}
		if got := s.node("repub-1").Annotations[s.key("public-ip")]; got != moved.PublicIP.String() {
			t.Fatalf("public-ip annotation %q, want %s", got, moved.PublicIP)
		}
		kctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Keep(kctx, l2) }()
		s.patchNode("repub-1", `{"metadata":{"annotations":{"`+s.key("public-ip")+`":"192.0.2.77"}}}`)
		testutil.WaitFor(t, 20*time.Second, "Keep to restore the republished address", func() bool {
			return s.node("repub-1").Annotations[s.key("public-ip")] == moved.PublicIP.String()
		})
		cancel()
		<-done
		if err := c.admin.CoreV1().Nodes().Delete(context.Background(), "repub-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Republish(ctxFor(t, 20*time.Second), l2, attrsFor(3)); !errors.Is(err, lease.ErrLeaseLost) {
			t.Errorf("republishing after the Node was deleted: %v, want ErrLeaseLost", err)
		}
	})

	// The allocator: agents on nodes without PodCIDRs race for few free
	// subnets; each ends with a distinct one, and the API server holds
	// them.
	t.Run("AllocatorRace", func(t *testing.T) {
		t.Parallel()
		// A /26 of /29s: 7 subnets after the first, for 6 agents.
		s := c.scope(t, "alloc", `{"Network": "10.106.0.0/26", "SubnetLen": 29, "Backend": {"Type": "vxlan"}}`)
		const agents = 6
		var wg sync.WaitGroup
		keys := make([]lease.Key, agents)
		for i := range agents {
			s.createNode(fmt.Sprintf("alloc-%d", i))
		}
		for i := range agents {
			m := s.manager(fmt.Sprintf("alloc-%d", i), c.srv.Admin, func(o *kube.Options) { o.AssignPodCIDRs = true })
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := m.Acquire(ctxFor(t, time.Minute), lease.AcquireRequest{Attrs: attrsFor(i)})
				if err != nil {
					t.Error(err)
				}
				keys[i] = l.Key
			}()
		}
		wg.Wait()
		t.Logf("claims withdrawn after a contest: %d", strings.Count(s.logs.String(), "another node claimed"))
		seen := map[netip.Prefix]int{}
		for i, k := range keys {
			n := s.node(fmt.Sprintf("alloc-%d", i))
			if !k.IPv4.IsValid() || n.Spec.PodCIDR != k.IPv4.String() {
				t.Errorf("agent %d: lease %v, node's PodCIDR %q", i, k, n.Spec.PodCIDR)
			}
			if j, dup := seen[k.IPv4]; dup {
				t.Errorf("agents %d and %d both got %v", j, i, k.IPv4)
			}
			seen[k.IPv4] = i
		}
	})
}

// nodeClient is the lease manager's own light client, for config.
func nodeClient(t *testing.T, config *rest.Config) kube.NodeClient {
	t.Helper()
	c, err := kube.NewNodeClient(config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
