package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/internal/ctxutil"
	"github.com/weftnet/weft/lease"
)

// listPage is how many Nodes one request of a full listing returns.
const listPage = 500

// Allocate gives this node a free PodCIDR of each family conf enables, for
// clusters whose kube-controller-manager does not allocate them (it runs
// without --allocate-node-cidrs). It returns the node's PodCIDRs: those it
// already has, if any, else the ones it assigned. previous is preferred if
// it is free.
//
// Agents on many nodes may allocate at once, and a PodCIDR, once set, can
// never be changed (the API server makes it write-once), so a CIDR must
// never be written to two nodes. Allocate makes sure of it in three steps:
//
//  1. It claims a CIDR no node holds or claims, by annotating its own node
//     (pod-cidr-claim), conditional on the node's resourceVersion.
//  2. It lists every node again, a consistent read from etcd. If another
//     node holds or claims a CIDR overlapping its claim, it withdraws the
//     claim and starts over after a random delay.
//  3. Only then does it write spec.podCIDR(s).
//
// If two agents claim the same CIDR at once, each lists after its own claim
// is stored, so at least one of them sees the other's claim and withdraws:
// no CIDR is written twice. Both may withdraw, and then retry at random
// times. A claim left by an agent that stopped between steps 1 and 3 is
// taken up again by its next run.
//
// Claims are judged as PodCIDRs, a family at a time: a family of another
// node's claim that is not one PodCIDR inside its network (a /16,
// 0.0.0.0/0, a misaligned or garbled one, several) takes no space and is
// reported, so that no Node's annotation can keep other nodes from a
// PodCIDR, while the good family of a claim made before a change between
// single- and dual-stack still counts. This node's own claim must be good
// in every family, or it is replaced.
//
// The write of spec needs RBAC "patch" on nodes, beyond flannel's role.
func (m *Manager) Allocate(ctx context.Context, conf lease.Config, previous lease.Key) (lease.Key, error) {
	for attempt := 0; ; attempt++ {
		node, err := m.getNode(ctx)
		if err != nil {
			return lease.Key{}, err
		}
		if have, err := podCIDRs(node); err != nil || have.IsValid() {
			return have, err
		}
		claim, ok, err := claimOf(node.Annotations[m.ann.key(annPodCIDRClaim)], conf)
		if err != nil {
			// Written by an earlier run under another net-conf.json, or by
			// hand: replaced below, and judged bad by every other node
			// meanwhile, so it blocks no one.
			m.logEvery("own-claim", waitLogInterval, slog.LevelWarn, "this node's PodCIDR claim is bad; replacing it",
				"annotation", m.ann.key(annPodCIDRClaim), "value", quoteShort(node.Annotations[m.ann.key(annPodCIDRClaim)]), "err", err)
		}
		if !ok {
			// No usable claim of an earlier run: make one.
			taken, err := m.takenCIDRs(ctx, "", conf)
			if err != nil {
				return lease.Key{}, err
			}
			if claim, err = pickFree(conf, taken, previous); err != nil {
				m.setCondition("acquire", "cannot assign a PodCIDR: "+err.Error())
				return lease.Key{}, err
			}
			if err := m.setClaim(ctx, node.ResourceVersion, claim); err != nil {
				if apierrors.IsConflict(err) {
					continue
				}
				return lease.Key{}, err
			}
		}
		// Contested? Only a listing made after the claim was stored tells.
		taken, err := m.takenCIDRs(ctx, m.node, conf)
		if err != nil {
			return lease.Key{}, err
		}
		if overlapsAny(claim, taken) {
			m.log.Info("another node claimed or holds the PodCIDR this node claimed; trying another", "claim", claim)
			if node, err = m.getNode(ctx); err == nil {
				err = m.setClaim(ctx, node.ResourceVersion, lease.Key{})
			}
			if err != nil && !apierrors.IsConflict(err) {
				return lease.Key{}, err
			}
			if err := ctxutil.Sleep(ctx, time.Duration(rand.N(100+100*min(attempt, 20)))*time.Millisecond); err != nil {
				return lease.Key{}, err
			}
			continue
		}
		if err := m.writePodCIDRs(ctx, claim); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
				continue // the node changed, maybe given a PodCIDR meanwhile: look again
			}
			return lease.Key{}, err
		}
		m.log.Info("assigned this node a PodCIDR", "subnets", claim)
		return claim, nil
	}
}

// setClaim writes this node's claim, or removes it for the zero Key,
// conditional on rv.
func (m *Manager) setClaim(ctx context.Context, rv string, claim lease.Key) error {
	var v *string
	if claim.IsValid() {
		var parts []string
		for _, p := range []netip.Prefix{claim.IPv4, claim.IPv6} {
			if p.IsValid() {
				parts = append(parts, p.String())
			}
		}
		v = ptr(strings.Join(parts, ","))
	}
	_, err := m.patchMeta(ctx, rv, map[string]any{"annotations": map[string]any{m.ann.key(annPodCIDRClaim): v}})
	return err
}

// takenCIDRs lists every node but skip, a page at a time and consistently
// (not from the informer's cache, which may lag), and returns the PodCIDRs
// they hold and the space their claims take under conf (see claimedSpace:
// each family of a claim judged on its own). A bad claim, or a claim's bad
// family, takes nothing; the bad ones are reported in one line, at most
// once a minute.
func (m *Manager) takenCIDRs(ctx context.Context, skip string, conf lease.Config) ([]netip.Prefix, error) {
	var taken []netip.Prefix
	var bad []badClaim
	opts := metav1.ListOptions{Limit: listPage}
	for {
		rctx, cancel := m.request(ctx)
		list, err := m.nodes.List(rctx, opts)
		cancel()
		if err != nil {
			m.apiError("list nodes", err)
			return nil, fmt.Errorf("kube: list nodes: %w", err)
		}
		for i := range list.Items {
			n := &list.Items[i]
			if n.Name == skip {
				continue
			}
			for _, s := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
				if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
					taken = append(taken, p.Masked())
				}
			}
			v := n.Annotations[m.ann.key(annPodCIDRClaim)]
			claimed, err := claimedSpace(v, conf)
			if err != nil {
				bad = append(bad, badClaim{n.Name, quoteShort(v), err.Error()})
			}
			taken = append(taken, claimed...)
		}
		if list.Continue == "" {
			m.apiOK("list nodes")
			if len(bad) > 0 {
				m.logEvery("bad-claims", waitLogInterval, slog.LevelWarn,
					"ignoring PodCIDR claims that are not one PodCIDR inside the Network; they take no space, and only their own nodes are affected",
					"bad_claims", len(bad), "claims", m.claimReport(bad))
			}
			return taken, nil
		}
		opts.Continue = list.Continue
	}
}

// pickFree chooses a free subnet of each family conf enables: previous's
// if it is free, else one at random.
func pickFree(conf lease.Config, taken []netip.Prefix, previous lease.Key) (lease.Key, error) {
	var k lease.Key
	for _, f := range []struct {
		r    lease.Range
		prev netip.Prefix
		dst  *netip.Prefix
	}{{conf.IPv4Range(), previous.IPv4, &k.IPv4}, {conf.IPv6Range(), previous.IPv6, &k.IPv6}} {
		if !f.r.IsValid() {
			continue
		}
		a, err := lease.NewAllocator(f.r, taken)
		if err != nil {
			return lease.Key{}, err
		}
		if f.prev.IsValid() && a.CheckFree(f.prev) == nil {
			*f.dst = f.prev
			continue
		}
		p, err := a.Pick(nil)
		if err != nil {
			return lease.Key{}, err
		}
		*f.dst = p
	}
	return k, nil
}

// overlapsAny reports whether a subnet of k overlaps one of taken.
func overlapsAny(k lease.Key, taken []netip.Prefix) bool {
	for _, t := range taken {
		for _, p := range []netip.Prefix{k.IPv4, k.IPv6} {
			if p.IsValid() && p.Overlaps(t) {
				return true
			}
		}
	}
	return false
}

// writePodCIDRs sets spec.podCIDR and spec.podCIDRs, IPv4 first as the API
// server wants for dual-stack.
func (m *Manager) writePodCIDRs(ctx context.Context, k lease.Key) error {
	var cidrs []string
	for _, p := range []netip.Prefix{k.IPv4, k.IPv6} {
		if p.IsValid() {
			cidrs = append(cidrs, p.String())
		}
	}
	body, err := json.Marshal(map[string]any{"spec": map[string]any{"podCIDR": cidrs[0], "podCIDRs": cidrs}})
	if err != nil {
		return err
	}
	rctx, cancel := m.request(ctx)
	defer cancel()
	if _, err := m.nodes.Patch(rctx, m.node, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		if apierrors.IsForbidden(err) {
			err = fmt.Errorf("%w (assigning PodCIDRs needs RBAC \"patch\" on nodes: see examples/manifests/rbac-allocator.yaml)", err)
		}
		if !apierrors.IsConflict(err) && !apierrors.IsInvalid(err) {
			m.apiError("patch node spec", err)
		}
		return fmt.Errorf("kube: set the PodCIDRs of node %s: %w", m.node, err)
	}
	m.apiOK("patch node spec")
	return nil
}
