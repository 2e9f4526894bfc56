//go:build linux

package vxlan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsutil"
)

// rtaNHID is RTA_NH_ID, the route attribute naming a nexthop object; it is
// missing from x/sys/unix.
const rtaNHID = 30

// nlaTypeMask strips the nested and byte-order flags from an attribute type.
const nlaTypeMask = 0x3fff

// rtconn is a NETLINK_ROUTE socket in one network namespace. Its writes are
// pipelined: a batch of requests goes out in as few sendmsg calls as the
// socket buffer allows, and the acknowledgements are matched back by
// sequence number. That is what makes programming thousands of peers cost
// little more than the kernel's own work. Replies are read into one reused
// buffer and walked in place, without allocating per message.
type rtconn struct {
	fd   int
	seq  uint32
	buf  []byte // outgoing
	rbuf []byte // incoming
}

// batchChunk is how many requests go out before their acknowledgements are
// read: enough to amortise the system calls, few enough that the
// acknowledgements (36 bytes each) fit the receive buffer.
const batchChunk = 512

func dialRoute(ns netns.NsHandle) (*rtconn, error) {
	fd, err := socketAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	// Acknowledgements without the request echoed back, errors with the
	// kernel's explanation, and dumps filtered in the kernel.
	for _, opt := range []int{unix.NETLINK_CAP_ACK, unix.NETLINK_EXT_ACK, unix.NETLINK_GET_STRICT_CHK} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, opt, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("netlink socket option %d: %w", opt, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	// A kernel that never answers must not hang the caller forever.
	tv := unix.Timeval{Sec: 30}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &rtconn{fd: fd, rbuf: make([]byte, recvBufferSize)}, nil
}

// socketAt opens a netlink socket in ns (the caller's namespace if ns is not
// set). A socket belongs to the namespace it was created in, so the thread
// switches there just for the socket call.
func socketAt(ns netns.NsHandle) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	}
	if !inNamespace(ns) {
		return open()
	}
	fd := -1
	err := netnsutil.Do(ns, func() error {
		var err error
		fd, err = open()
		return err
	})
	if err != nil && fd >= 0 {
		unix.Close(fd)
		return -1, err
	}
	return fd, err
}

// inNamespace reports whether ns names a namespace to switch to; the zero
// handle means the caller's (see netnsutil.InOther).
func inNamespace(ns netns.NsHandle) bool { return netnsutil.InOther(ns) }

// handleAt returns a netlink handle for ns (the zero handle: the
// caller's namespace).
func handleAt(ns netns.NsHandle) (*netlink.Handle, error) {
	if inNamespace(ns) {
		return netlink.NewHandleAt(ns)
	}
	return netlink.NewHandle()
}

// close closes the socket. Later calls fail with errClosed instead of
// reaching whatever socket reuses the descriptor number.
func (c *rtconn) close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// recvBufferSize bounds one netlink datagram. The kernel builds dump
// datagrams of at most 32 KiB, and every other message is one small skb,
// so this holds any datagram with room to spare; the buffers live as long
// as their sockets, so a larger one would only cost memory. A datagram
// that did not fit would be reported, not silently cut.
const recvBufferSize = 64 << 10

// recv reads one datagram and calls f with each message in it.
func (c *rtconn) recv(f func(h *unix.NlMsghdr, data []byte)) error {
	for {
		n, _, err := unix.Recvfrom(c.fd, c.rbuf, unix.MSG_TRUNC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		if n > len(c.rbuf) {
			return fmt.Errorf("netlink receive: a %d-byte datagram overflowed the %d-byte buffer", n, len(c.rbuf))
		}
		b := c.rbuf[:n]
		for len(b) >= unix.SizeofNlMsghdr {
			h := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
			l := int(h.Len)
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return errors.New("netlink receive: malformed message")
			}
			f(h, b[unix.SizeofNlMsghdr:l])
			b = b[min(nlmAlign(l), len(b)):]
		}
		return nil
	}
}

func nlmAlign(n int) int { return (n + 3) &^ 3 }

// A request is one netlink message to send: its type, flags and body (the
// fixed header followed by attributes). Its description for errors and
// logs is derived from the body when needed, so that programming thousands
// of peers formats no strings.
type request struct {
	typ   uint16
	flags uint16
	body  []byte
}

// object is the kind of object a request adds; 0 for a deletion.
func (r request) object() Objects {
	switch r.typ {
	case unix.RTM_NEWNEXTHOP:
		return ObjectNexthop
	case unix.RTM_NEWROUTE:
		return ObjectRoute
	case unix.RTM_NEWNEIGH:
		if len(r.body) > 0 && r.body[0] == unix.AF_BRIDGE {
			return ObjectFDB
		}
		return ObjectNeighbour
	}
	return 0
}

// describe names the object a request writes, e.g. "route 10.244.3.0/24".
func (r request) describe() string {
	op := ""
	switch r.typ {
	case unix.RTM_DELROUTE, unix.RTM_DELNEXTHOP, unix.RTM_DELNEIGH:
		op = "delete "
	}
	switch r.typ {
	case unix.RTM_NEWNEXTHOP, unix.RTM_DELNEXTHOP:
		n, _ := parseNexthop(r.body)
		if n.gw.IsValid() {
			return fmt.Sprintf("%snexthop %d via %s", op, n.id, n.gw)
		}
		return fmt.Sprintf("%snexthop %d", op, n.id)
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		rt, _ := parseRoute(r.body)
		return op + "route " + rt.dst.String()
	case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
		if len(r.body) > 0 && r.body[0] == unix.AF_BRIDGE {
			f, _ := parseFDB(r.body)
			return fmt.Sprintf("%sfdb %s dst %s", op, f.mac, f.dst)
		}
		n, _ := parseNeigh(r.body)
		if op == "" {
			return fmt.Sprintf("neighbour %s lladdr %s", n.ip, n.mac)
		}
		return op + "neighbour " + n.ip.String()
	}
	return fmt.Sprintf("netlink message type %d", r.typ)
}

// nextSeq returns the next sequence number. It wraps through zero, which
// netlink allows, so that the offsets exec computes stay contiguous.
func (c *rtconn) nextSeq() uint32 {
	c.seq++
	return c.seq
}

// errClosed is returned by a connection used after close.
var errClosed = errors.New("netlink connection is closed")

// exec sends reqs in pipelined chunks and returns one error per request (nil
// for success). The error slice is nil when every request succeeded. A
// socket-level failure is returned as the second result.
func (c *rtconn) exec(reqs []request) ([]error, error) {
	if c.fd < 0 {
		return nil, errClosed
	}
	var errs []error
	for start := 0; start < len(reqs); start += batchChunk {
		chunk := reqs[start:min(start+batchChunk, len(reqs))]
		first := c.seq + 1
		c.buf = c.buf[:0]
		for _, r := range chunk {
			c.buf = appendMsg(c.buf, r.typ, r.flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK, c.nextSeq(), r.body)
		}
		if err := c.send(c.buf); err != nil {
			return nil, err
		}
		pending := len(chunk)
		for pending > 0 {
			err := c.recv(func(h *unix.NlMsghdr, data []byte) {
				if h.Type != unix.NLMSG_ERROR || len(data) < 4 {
					return
				}
				i := int(h.Seq - first)
				if i < 0 || i >= len(chunk) {
					return // not ours (a stale reply)
				}
				pending--
				if code := int32(binary.NativeEndian.Uint32(data[:4])); code != 0 {
					if errs == nil {
						errs = make([]error, len(reqs))
					}
					errs[start+i] = fmt.Errorf("%s: %w%s", chunk[i].describe(), syscall.Errno(-code), extAck(h, data))
				}
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return errs, nil
}

// send writes one datagram. Netlink delivers a datagram whole or not at
// all, so a short write is an error, never something to resume.
func (c *rtconn) send(b []byte) error {
	if c.fd < 0 {
		return errClosed
	}
	for {
		n, err := unix.Write(c.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink send: %w", err)
		}
		if n != len(b) {
			return fmt.Errorf("netlink send: wrote %d of %d bytes", n, len(b))
		}
		return nil
	}
}

// dump sends a dump request and calls f with the body of each reply.
// An interrupted dump (the table changed under it) is retried.
func (c *rtconn) dump(typ uint16, body []byte, restart func(), f func(typ uint16, data []byte) error) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			restart()
		}
		seq := c.nextSeq()
		if err := c.send(appendMsg(c.buf[:0], typ, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, body)); err != nil {
			return err
		}
		interrupted, err := c.readDump(seq, f)
		if err != nil || !interrupted {
			return err
		}
		if attempt == 5 {
			return errors.New("netlink dump: interrupted five times in a row")
		}
	}
}

func (c *rtconn) readDump(seq uint32, f func(uint16, []byte) error) (interrupted bool, err error) {
	var ferr, kerr error
	done := false
	for !done {
		err := c.recv(func(h *unix.NlMsghdr, data []byte) {
			if h.Seq != seq || done {
				return
			}
			if h.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch h.Type {
			case unix.NLMSG_DONE:
				done = true
			case unix.NLMSG_ERROR:
				done = true
				if len(data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(data[:4])); code != 0 {
						kerr = fmt.Errorf("netlink dump: %w%s", syscall.Errno(-code), extAck(h, data))
					}
				}
			default:
				if ferr == nil {
					ferr = f(h.Type, data)
				}
			}
		})
		if err != nil {
			return false, err
		}
	}
	if kerr != nil {
		return false, kerr
	}
	return interrupted, ferr
}

// extAck returns the kernel's extended error message, if any, as " (msg)".
func extAck(h *unix.NlMsghdr, data []byte) string {
	if h.Flags&unix.NLM_F_ACK_TLVS == 0 || len(data) < 4+unix.SizeofNlMsghdr {
		return ""
	}
	msg := ""
	forEachAttr(data[4+unix.SizeofNlMsghdr:], func(typ uint16, v []byte) {
		if typ == unix.NLMSGERR_ATTR_MSG {
			msg = " (" + strings.TrimRight(string(v), "\x00") + ")"
		}
	})
	return msg
}

func appendMsg(b []byte, typ, flags uint16, seq uint32, body []byte) []byte {
	n := unix.SizeofNlMsghdr + len(body)
	b = binary.NativeEndian.AppendUint32(b, uint32(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it in
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// attr appends a route attribute.
func attr(b []byte, typ uint16, value []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(value)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func addrBytes(a netip.Addr) []byte { return a.AsSlice() }

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// forEachAttr calls f with each attribute in b, without allocating.
func forEachAttr(b []byte, f func(typ uint16, value []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[4:l])
		b = b[min((l+3)&^3, len(b)):]
	}
}

func addrFrom(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}
