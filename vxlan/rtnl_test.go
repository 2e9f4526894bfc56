//go:build linux

package vxlan

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
)

// A datagram larger than the receive buffer is reported, never parsed cut
// short. The buffer is shrunk so that a link dump overflows it.
func TestRecvReportsOverflow(t *testing.T) {
	t.Parallel()
	h := netnstest.NewSegment(t, 1).Hosts[0]
	c, err := dialRoute(h.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.rbuf = c.rbuf[:64]
	body := make([]byte, unix.SizeofIfInfomsg)
	err = c.dump(unix.RTM_GETLINK, body, func() {}, func(uint16, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "overflowed") {
		t.Fatalf("dump with a 64-byte buffer: %v, want an overflow error", err)
	}
}

// A dump the kernel marks interrupted (the table changed between its
// parts) is started over, after restart, so that the caller can drop what
// it made of the inconsistent parts. Nexthop dumps are checked for
// consistency by the kernel, so a nexthop added while reading the first
// part interrupts the dump.
func TestDumpRestartsWhenInterrupted(t *testing.T) {
	t.Parallel()
	h := netnstest.NewSegment(t, 1).Hosts[0]
	c, err := dialRoute(h.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	writer, err := dialRoute(h.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.close()
	// Enough nexthops for a dump of several parts.
	const n = 2000
	gw, under := h.Addr.Addr().Next(), hostDeviceConfig(t, h, false).Underlay
	var reqs []request
	for i := range n {
		reqs = append(reqs, nexthop{id: uint32(1000 + i), gw: gw, dev: under, proto: DefaultRouteProtocol}.addRequest())
	}
	exec := func(reqs []request) {
		t.Helper()
		errs, err := writer.exec(reqs)
		if err == nil {
			err = firstErr(errs)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	exec(reqs)

	restarts, seen, added := 0, map[uint32]int{}, false
	err = c.dump(unix.RTM_GETNEXTHOP, make([]byte, 8), func() {
		restarts++
		clear(seen)
	}, func(_ uint16, data []byte) error {
		if nh, ok := parseNexthop(data); ok {
			seen[nh.id]++
		}
		if !added {
			added = true
			exec([]request{nexthop{id: 999, gw: gw, dev: under, proto: DefaultRouteProtocol}.addRequest()})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if restarts != 1 {
		t.Errorf("%d restarts, want 1", restarts)
	}
	if len(seen) != n+1 {
		t.Errorf("the final dump listed %d nexthops, want %d", len(seen), n+1)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("nexthop %d listed %d times", id, k)
		}
	}
}
