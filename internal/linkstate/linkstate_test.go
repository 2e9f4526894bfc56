package linkstate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/netnstest"
)

// TestWait: a bridge with a veth port, whose peer is in another
// namespace, each set up: Wait returns once all are operationally up, and
// Up then says so of each. A link left down is named, with what it lacks,
// when the wait ends.
func TestWait(t *testing.T) {
	netnstest.RequirePrivileged(t)
	node := netnstest.NewNamespace(t, "weft-ls")
	pod := netnstest.NewNamespace(t, "weft-lsp")
	nl := node.Netlink()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := nl.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0", MasterIndex: br.Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(pod.Handle)}
	if err := nl.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{br, veth} {
		if err := nl.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	// The pod's end still down: the wait names it.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := Wait(ctx, pod.Netlink(), "eth0")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "eth0 is not operationally up (administratively down)") {
		t.Fatalf("Wait on a link left down: %v", err)
	}
	eth, err := pod.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := pod.Netlink().LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := Wait(ctx, nl, "br0", "veth0"); err != nil {
		t.Fatal(err)
	}
	if err := Wait(ctx, pod.Netlink(), "eth0"); err != nil {
		t.Fatal(err)
	}
	t.Logf("operationally up %v after the last was set up", time.Since(start).Round(time.Millisecond))
	for _, c := range []struct {
		h    *netlink.Handle
		name string
	}{{nl, "br0"}, {nl, "veth0"}, {pod.Netlink(), "eth0"}} {
		l, err := c.h.LinkByName(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if ok, why := Up(l); !ok {
			t.Errorf("%s after Wait: %s", c.name, why)
		}
	}
	if err := Wait(ctx, nl, "nosuch0"); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("Wait on a missing link: %v", err)
	}
}
