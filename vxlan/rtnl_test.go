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
	err = c.dump(unix.RTM_GETLINK, body, func(uint16, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "overflowed") {
		t.Fatalf("dump with a 64-byte buffer: %v, want an overflow error", err)
	}
}
