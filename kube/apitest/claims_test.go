package apitest_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
)

// claimNetwork is the allocator history's network: 16 /28s, of which
// SubnetMin (the second) to the last, 15, are to be allocated.
const (
	claimNetwork = "10.107.0.0/24"
	claimLen     = 28
)

// claimHistory drives hostile pod-cidr-claim annotations and honest
// allocating agents against one API server, and keeps the model the
// invariant is checked against.
type claimHistory struct {
	t       *testing.T
	s       *scope
	rnd     *rand.Rand
	next    int
	hostile []string // hostile nodes still there
	honest  []string // honest nodes, allocated or still waiting
}

// hostileClaim returns a claim value of one hostile kind, and the kind.
func (h *claimHistory) hostileClaim() (value, kind string) {
	free := h.free()
	taken := h.validClaims()
	for _, n := range h.honest {
		if p := h.podCIDR(n); p.IsValid() {
			taken = append(taken, p)
		}
	}
	kinds := []string{"network", "wider", "everything", "everything6", "outside", "wrong-size", "too-small",
		"misaligned", "garbage", "many", "empty", "duplicate", "squat", "host-bits-list", "two-families"}
	kind = kinds[h.rnd.IntN(len(kinds))]
	switch kind {
	case "network":
		return claimNetwork, kind
	case "wider":
		return "10.107.0.0/16", kind
	case "everything":
		return "0.0.0.0/0", kind
	case "everything6":
		return "::/0", kind
	case "outside":
		return "10.108.0.16/28", kind
	case "wrong-size":
		return "10.107.0.32/27", kind
	case "too-small":
		return "10.107.0.48/29", kind
	case "misaligned":
		return "10.107.0.17/28", kind
	case "garbage":
		return []string{"zzz", "10.107.0.16/28,", ",", "10.107.0.16/33", "10.107.0.16", `{"a":1}`}[h.rnd.IntN(6)], kind
	case "many":
		var all []string
		for i := 1; i < 16; i++ {
			all = append(all, fmt.Sprintf("10.107.0.%d/28", 16*i))
		}
		return strings.Join(all, ","), kind
	case "empty":
		return "", kind
	case "duplicate":
		if len(taken) > 0 {
			return taken[h.rnd.IntN(len(taken))].String(), kind
		}
		return "10.107.0.16/28", kind
	case "squat":
		if len(free) > 0 {
			return free[h.rnd.IntN(len(free))].String(), kind
		}
		return "10.107.0.16/28", kind
	case "host-bits-list":
		return "10.107.0.16/28,10.107.0.33/28", kind
	default:
		return "10.107.0.16/28,fd00::/64", kind
	}
}

// validClaim returns the subnet a claim value holds by the rules claims
// are judged by: a list of CIDRs with host bits zero, one of each family,
// the IPv4 one inside the network and of the subnet length (IPv6 is not
// enabled here, so an IPv6 CIDR beside it is ignored).
func validClaim(v string) (netip.Prefix, bool) {
	var v4, v6 netip.Prefix
	for _, s := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil || p != p.Masked() {
			return netip.Prefix{}, false
		}
		dst := &v4
		if p.Addr().Is6() {
			dst = &v6
		}
		if dst.IsValid() {
			return netip.Prefix{}, false
		}
		*dst = p
	}
	if !v4.IsValid() || v4.Bits() != claimLen || !netip.MustParsePrefix(claimNetwork).Contains(v4.Addr()) {
		return netip.Prefix{}, false
	}
	return v4, true
}

// validClaims returns the valid claims of the hostile nodes.
func (h *claimHistory) validClaims() []netip.Prefix {
	var out []netip.Prefix
	for _, n := range h.hostile {
		if p, ok := validClaim(h.s.node(n).Annotations[h.s.key("pod-cidr-claim")]); ok {
			out = append(out, p)
		}
	}
	return out
}

func (h *claimHistory) podCIDR(name string) netip.Prefix {
	n := h.s.node(name)
	if n.Spec.PodCIDR == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(n.Spec.PodCIDR)
}

// free returns the subnets of the range no honest node holds and no valid
// claim takes.
func (h *claimHistory) free() []netip.Prefix {
	var taken []netip.Prefix
	taken = append(taken, h.validClaims()...)
	for _, n := range h.honest {
		if p := h.podCIDR(n); p.IsValid() {
			taken = append(taken, p)
		}
	}
	var free []netip.Prefix
	for i := 1; i < 16; i++ {
		p := netip.MustParsePrefix(fmt.Sprintf("10.107.0.%d/28", 16*i))
		if !slices.Contains(taken, p) {
			free = append(free, p)
		}
	}
	return free
}

func (h *claimHistory) name(kind string) string {
	h.next++
	return fmt.Sprintf("claim-%s-%d", kind, h.next)
}

// addHostile creates a node that claims whatever a hostile kind says, by
// its own annotation, as a node's credentials can.
func (h *claimHistory) addHostile() {
	v, kind := h.hostileClaim()
	name := h.name("hostile")
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{h.s.key("pod-cidr-claim"): v}}}
	if _, err := h.s.c.admin.CoreV1().Nodes().Create(ctxFor(h.t, 10*time.Second), n, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.hostile = append(h.hostile, name)
	h.t.Logf("step: hostile node %s claims %q (%s)", name, v, kind)
}

// rewrite changes a hostile node's claim.
func (h *claimHistory) rewrite() {
	if len(h.hostile) == 0 {
		h.addHostile()
		return
	}
	name := h.hostile[h.rnd.IntN(len(h.hostile))]
	v, kind := h.hostileClaim()
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{h.s.key("pod-cidr-claim"): v}}})
	h.s.patchNode(name, string(body))
	h.t.Logf("step: hostile node %s now claims %q (%s)", name, v, kind)
}

// remove deletes a hostile node, and with it its claim.
func (h *claimHistory) remove() {
	if len(h.hostile) == 0 {
		return
	}
	i := h.rnd.IntN(len(h.hostile))
	name := h.hostile[i]
	if err := h.s.c.admin.CoreV1().Nodes().Delete(ctxFor(h.t, 10*time.Second), name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.hostile = slices.Delete(h.hostile, i, i+1)
	h.t.Logf("step: hostile node %s deleted", name)
}

// join runs an honest allocating agent: a waiting one again if there is
// one, else a new node's. While the model has space, it must get a
// PodCIDR that no valid claim of another node takes; without space, it
// must say the network is out of subnets.
func (h *claimHistory) join() {
	name := ""
	for _, n := range h.honest {
		if !h.podCIDR(n).IsValid() {
			name = n
			break
		}
	}
	if name == "" {
		name = h.name("honest")
		h.s.createNode(name)
		h.honest = append(h.honest, name)
	}
	free, claims := h.free(), h.validClaims()
	m := h.s.manager(name, h.s.c.srv.Admin, func(o *kube.Options) { o.AssignPodCIDRs = true })
	defer m.Close()
	wait := time.Minute
	if len(free) == 0 {
		wait = 3 * time.Second
	}
	l, err := m.Acquire(ctxFor(h.t, wait), lease.AcquireRequest{Attrs: attrsFor(h.next % 250)})
	switch {
	case len(free) == 0:
		if err == nil {
			h.t.Errorf("honest node %s got %v with no space left", name, l.Key)
		} else if !strings.Contains(m.Stats().Condition, "out of subnets") {
			h.t.Errorf("honest node %s with no space left: %v, condition %q", name, err, m.Stats().Condition)
		}
		h.t.Logf("step: honest node %s waits: no space", name)
	case err != nil:
		h.t.Fatalf("honest node %s got no PodCIDR with %d subnets free %v: %v; condition %q", name, len(free), free, err, m.Stats().Condition)
	default:
		for _, c := range claims {
			if c.Overlaps(l.Key.IPv4) {
				h.t.Errorf("honest node %s took %v, which a valid claim held", name, l.Key)
			}
		}
		h.t.Logf("step: honest node %s got %v", name, l.Key)
	}
}

// check is the invariant's first half: no two nodes' PodCIDRs overlap.
// The second, every honest node allocated while space remains, is checked
// by join, which runs a waiting node's agent again before any new one.
func (h *claimHistory) check() {
	var all []netip.Prefix
	list, err := h.s.c.admin.CoreV1().Nodes().List(ctxFor(h.t, 10*time.Second), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, n := range list.Items {
		if !strings.HasPrefix(n.Name, "claim-") || n.Spec.PodCIDR == "" {
			continue
		}
		p := netip.MustParsePrefix(n.Spec.PodCIDR)
		for _, q := range all {
			if p.Overlaps(q) {
				h.t.Errorf("node %s's PodCIDR %v overlaps %v", n.Name, p, q)
			}
		}
		all = append(all, p)
	}
}

// TestAllocatorHostileClaims: nodes annotate themselves with every kind of
// bad pod-cidr-claim, as their own credentials can, while honest agents
// join and allocate; after every step of a random history no two PodCIDRs
// overlap, and every honest node has one while space remains.
func TestAllocatorHostileClaims(t *testing.T) {
	c := newCluster(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	s := c.scope(t, "claims", fmt.Sprintf(`{"Network": %q, "SubnetLen": %d, "Backend": {"Type": "vxlan"}}`, claimNetwork, claimLen))
	h := &claimHistory{t: t, s: s, rnd: rand.New(rand.NewPCG(seed, 29))}
	// The observed case first: a claim of the whole network.
	name := h.name("hostile")
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{s.key("pod-cidr-claim"): "10.107.0.0/16"}}}
	if _, err := c.admin.CoreV1().Nodes().Create(ctxFor(t, 10*time.Second), n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.hostile = append(h.hostile, name)
	h.join()
	h.check()
	for range 40 {
		switch r := h.rnd.IntN(10); {
		case r < 4:
			h.addHostile()
		case r < 5:
			h.rewrite()
		case r < 6:
			h.remove()
		default:
			h.join()
		}
		h.check()
		if t.Failed() {
			t.Logf("logs:\n%s", s.logs)
			return
		}
	}
	if !strings.Contains(s.logs.String(), s.key("pod-cidr-claim")) {
		t.Errorf("no bad claim was reported naming the annotation:\n%s", s.logs)
	}
}

// TestClaimHalfSurvivesStackChange: a node that claimed an IPv4 PodCIDR
// under a single-stack net-conf.json, and is about to write it, still
// takes that space after the config turns dual-stack: another node's
// agent, judging claims by the new config, must not hand the same IPv4
// PodCIDR out because the claim lacks the new family. Each family of a
// claim is judged on its own.
func TestClaimHalfSurvivesStackChange(t *testing.T) {
	c := newCluster(t)
	const claimed = "10.107.0.16/28"
	s := c.scope(t, "stackchange", fmt.Sprintf(`{"Network": %q, "SubnetLen": %d, "EnableIPv6": true, "IPv6Network": "fd00:107::/56", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"}}`, claimNetwork, claimLen))
	for _, tc := range []struct{ name, claim string }{
		{"v4-only", claimed},                          // written under the single-stack config
		{"v6-outside", claimed + ",fd00:999::/64"},    // the IPv6 half is outside the new IPv6Network
		{"v6-wrong-size", claimed + ",fd00:107::/60"}, // the IPv6 half is not a PodCIDR's size
	} {
		t.Run(tc.name, func(t *testing.T) {
			claimer := "claim-half-" + tc.name
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: claimer, Annotations: map[string]string{s.key("pod-cidr-claim"): tc.claim}}}
			if _, err := c.admin.CoreV1().Nodes().Create(ctxFor(t, 10*time.Second), n, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			name := "claim-half-honest-" + tc.name
			s.createNode(name)
			m := s.manager(name, c.srv.Admin, func(o *kube.Options) { o.AssignPodCIDRs = true })
			defer m.Close()
			// The previous subnet is the claimed one, so that an allocator
			// that wrongly thinks it free takes it, rather than by chance.
			l, err := m.Acquire(ctxFor(t, time.Minute), lease.AcquireRequest{Attrs: attrsFor(7), Previous: lease.Key{IPv4: netip.MustParsePrefix(claimed)}})
			if err != nil {
				t.Fatalf("Acquire: %v\n%s", err, s.logs)
			}
			if l.Key.IPv4.Overlaps(netip.MustParsePrefix(claimed)) {
				t.Fatalf("node %s got %v, which node %s claims (%q)", name, l.Key, claimer, tc.claim)
			}
			if err := c.admin.CoreV1().Nodes().Delete(ctxFor(t, 10*time.Second), claimer, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
