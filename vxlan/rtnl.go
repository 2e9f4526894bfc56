package vxlan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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
// little more than the kernel's own work.
type rtconn struct {
	sock *nl.NetlinkSocket
	seq  uint32
	buf  []byte
}

// batchChunk is how many requests go out before their acknowledgements are
// read: enough to amortise the system calls, few enough that the
// acknowledgements (36 bytes each) fit the receive buffer.
const batchChunk = 512

func dialRoute(ns netns.NsHandle) (*rtconn, error) {
	cur, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer cur.Close()
	target := ns
	if !ns.IsOpen() {
		target = cur
	}
	s, err := nl.GetNetlinkSocketAt(target, cur, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	fd := s.GetFd()
	// Acknowledgements without the request echoed back, and errors with
	// the kernel's explanation.
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	return &rtconn{sock: s}, nil
}

func (c *rtconn) close() { c.sock.Close() }

// A request is one netlink message to send: its type, flags and body (the
// fixed header followed by attributes).
type request struct {
	typ   uint16
	flags uint16
	body  []byte
	what  string // for errors, e.g. "route 10.244.3.0/24"
}

func (c *rtconn) nextSeq() uint32 {
	c.seq++
	if c.seq == 0 {
		c.seq = 1
	}
	return c.seq
}

// exec sends reqs in pipelined chunks and returns one error per request (nil
// for success). The error slice is nil when every request succeeded. A
// socket-level failure is returned as the second result.
func (c *rtconn) exec(reqs []request) ([]error, error) {
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
			msgs, _, err := c.sock.Receive()
			if err != nil {
				return nil, fmt.Errorf("netlink receive: %w", err)
			}
			for _, m := range msgs {
				if m.Header.Type != unix.NLMSG_ERROR {
					continue
				}
				i := int(m.Header.Seq - first)
				if i < 0 || i >= len(chunk) {
					continue // not ours (a stale reply)
				}
				pending--
				if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
					if errs == nil {
						errs = make([]error, len(reqs))
					}
					errs[start+i] = fmt.Errorf("%s: %w%s", chunk[i].what, syscall.Errno(-code), extAck(m))
				}
			}
		}
	}
	return errs, nil
}

func (c *rtconn) send(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(c.sock.GetFd(), b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink send: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// dump sends a dump request and calls f with the body of each reply.
// An interrupted dump (the table changed under it) is retried.
func (c *rtconn) dump(typ uint16, body []byte, f func(typ uint16, data []byte) error) error {
	for attempt := 0; ; attempt++ {
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
	var ferr error
	for {
		msgs, _, err := c.sock.Receive()
		if err != nil {
			return false, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return interrupted, ferr
			case unix.NLMSG_ERROR:
				if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
					return false, fmt.Errorf("netlink dump: %w%s", syscall.Errno(-code), extAck(m))
				}
				return interrupted, ferr
			default:
				if ferr == nil {
					ferr = f(m.Header.Type, m.Data)
				}
			}
		}
	}
}

// extAck returns the kernel's extended error message, if any, as ": msg".
func extAck(m syscall.NetlinkMessage) string {
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(m.Data) < 4+unix.SizeofNlMsghdr {
		return ""
	}
	attrs, err := nl.ParseRouteAttr(m.Data[4+unix.SizeofNlMsghdr:])
	if err != nil {
		return ""
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.NLMSGERR_ATTR_MSG {
			return " (" + nl.BytesToString(a.Value) + ")"
		}
	}
	return ""
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

func parseAttrs(b []byte) map[uint16][]byte {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil
	}
	m := make(map[uint16][]byte, len(attrs))
	for _, a := range attrs {
		m[a.Attr.Type&nlaTypeMask] = a.Value
	}
	return m
}

func addrFrom(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}
