//go:build linux

package probe

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsutil"
)

// echoer sends ICMP echo requests on one raw socket and matches the
// replies. A raw ICMP socket sees every echo reply in the namespace, so a
// reply is ours only with our identifier, a sequence number in flight and
// our random token as its data.
type echoer struct {
	ipv6  bool
	conn  *icmp.PacketConn
	id    int
	token []byte

	mu      sync.Mutex
	seq     uint16
	pending map[uint16]*echo
}

// echo is one request in flight.
type echo struct {
	dst   netip.Addr
	size  int // the IP packet's length
	sent  time.Time
	reply chan time.Duration // its round trip, sent once
}

// Header lengths: an echo of size n carries n minus these in data.
const (
	ipv4Header = 20
	ipv6Header = 40
	icmpHeader = 8
	tokenLen   = 8
)

// minSize is the smallest echo of a family: its headers and the token.
func minSize(ipv6 bool) int {
	if ipv6 {
		return ipv6Header + icmpHeader + tokenLen
	}
	return ipv4Header + icmpHeader + tokenLen
}

// maxSize bounds the echoes sent and read: a jumbo frame's MTU, with room.
const maxSize = 65535

func openEchoer(ns netns.NsHandle, ipv6Family bool) (*echoer, error) {
	network, addr := "ip4:icmp", "0.0.0.0"
	if ipv6Family {
		network, addr = "ip6:ipv6-icmp", "::"
	}
	var c *icmp.PacketConn
	open := func() error {
		var err error
		c, err = icmp.ListenPacket(network, addr)
		return err
	}
	var err error
	if netnsutil.InOther(ns) {
		err = netnsutil.Do(ns, open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, fmt.Errorf("probe: open a raw %s socket (needs CAP_NET_RAW): %w", network, err)
	}
	// Only echo replies are worth waking up for.
	if ipv6Family {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		err = c.IPv6PacketConn().SetICMPFilter(&f)
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		err = c.IPv4PacketConn().SetICMPFilter(&f)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("probe: filter the %s socket: %w", network, err)
	}
	if err := setDontFragment(c, ipv6Family); err != nil {
		c.Close()
		return nil, fmt.Errorf("probe: set don't-fragment on the %s socket: %w", network, err)
	}
	e := &echoer{ipv6: ipv6Family, conn: c, token: make([]byte, tokenLen), pending: map[uint16]*echo{}}
	var id [2]byte
	rand.Read(id[:])
	rand.Read(e.token)
	e.id = int(id[0])<<8 | int(id[1])
	return e, nil
}

func (e *echoer) close() error { return e.conn.Close() }

// setDontFragment makes every echo leave with DF set (IPv6 is never
// fragmented on the path anyway) and never fragmented here, whatever path
// MTU the kernel has cached: IP_PMTUDISC_PROBE, as tracepath uses, so that
// an echo of the device's MTU tests the path rather than what the kernel
// believes of it. One echo larger than the route's MTU fails to send.
func setDontFragment(c *icmp.PacketConn, ipv6Family bool) error {
	var pc net.PacketConn
	level, opt, val := unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE
	if ipv6Family {
		pc = c.IPv6PacketConn().PacketConn
		level, opt, val = unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE
	} else {
		pc = c.IPv4PacketConn().PacketConn
	}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, val) }); err != nil {
		return err
	}
	return serr
}

// serve reads replies until the socket is closed.
func (e *echoer) serve() {
	proto := 1 // ICMPv4
	if e.ipv6 {
		proto = 58
	}
	buf := make([]byte, maxSize)
	for {
		n, from, err := e.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // not in a tight loop, whatever the error
			continue
		}
		got := time.Now()
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		body, ok := m.Body.(*icmp.Echo)
		if !ok || body.ID != e.id || !bytes.HasPrefix(body.Data, e.token) {
			continue
		}
		src := netip.Addr{}
		if ia, ok := from.(*net.IPAddr); ok {
			src, _ = netip.AddrFromSlice(ia.IP)
			src = src.Unmap()
		}
		e.mu.Lock()
		// The data's length tells a full-size echo's reply from a
		// small one's of the same sequence number (a wrapped counter).
		if p, ok := e.pending[uint16(body.Seq)]; ok && p.dst == src && len(body.Data) == p.size-e.headers() {
			delete(e.pending, uint16(body.Seq))
			select {
			case p.reply <- got.Sub(p.sent):
			default: // its prober has given up on it
			}
		}
		e.mu.Unlock()
	}
}

// headers is the length of an echo's IP and ICMP headers and token.
func (e *echoer) headers() int { return minSize(e.ipv6) - tokenLen }

// send sends one echo request of size bytes (the IP packet; at least
// minSize, and 0 means that) to dst and returns what its reply arrives on,
// and a func that forgets it.
func (e *echoer) send(dst netip.Addr, size int, reply chan time.Duration) (func(), error) {
	size = max(size, minSize(e.ipv6))
	if size > maxSize {
		return nil, fmt.Errorf("an echo of %d bytes is larger than %d", size, maxSize)
	}
	e.mu.Lock()
	// The next sequence number not in flight: a round has at most a few
	// thousand, of 65,536.
	e.seq++
	for _, busy := e.pending[e.seq]; busy; _, busy = e.pending[e.seq] {
		e.seq++
	}
	seq := e.seq
	p := &echo{dst: dst, size: size, sent: time.Now(), reply: reply}
	e.pending[seq] = p
	e.mu.Unlock()
	forget := func() {
		e.mu.Lock()
		if e.pending[seq] == p {
			delete(e.pending, seq)
		}
		e.mu.Unlock()
	}
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if e.ipv6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	// The kernel computes an ICMPv6 checksum on raw sockets itself.
	data := make([]byte, size-e.headers())
	copy(data, e.token)
	b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: e.id, Seq: int(seq), Data: data}}).Marshal(nil)
	if err != nil {
		forget()
		return nil, err
	}
	if _, err := e.conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		forget()
		return nil, err
	}
	return forget, nil
}
