//go:build linux

package status

import (
	"net"

	"golang.org/x/sys/unix"
)

// unsent is how many bytes written to c the client has not yet
// acknowledged (SIOCOUTQ); 0 for anything but TCP.
func unsent(c net.Conn) int {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}

// resetOnClose makes closing c drop what is queued to its client and
// send a reset (SO_LINGER 0), instead of leaving it to the kernel.
func resetOnClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}
