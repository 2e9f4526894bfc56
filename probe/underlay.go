//go:build linux

package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsutil"
)

// underlay checks t's public address when the overlay did not answer: an
// ICMP echo, which every host's kernel answers unless a firewall drops
// it, and then, if Config.UnderlayTCPPort is set, a TCP connection to
// that port, which a host answers with SYN-ACK or RST whatever listens.
// It returns nil for a peer without a public IP.
func (p *Prober) underlay(ctx context.Context, t Target) *Underlay {
	if !t.PublicIP.IsValid() {
		return nil
	}
	u := &Underlay{Time: time.Now()}
	e, openErr := p.echoerFor(t.PublicIP)
	var tried []string
	if e != nil {
		o := p.echo(ctx, e, t.PublicIP, 0, KindUnderlay)
		if o.ok {
			u.Reachable, u.By = true, "icmp echo"
			return u
		}
		tried = append(tried, "icmp echo: "+o.err)
		u.By = "icmp"
	} else if openErr != nil {
		tried = append(tried, "icmp echo: "+openErr.Error())
	}
	if port := p.cfg.UnderlayTCPPort; port > 0 && ctx.Err() == nil {
		p.count(KindTCP, 0)
		answer, err := tcpAnswer(ctx, p.cfg.Namespace, netip.AddrPortFrom(t.PublicIP, uint16(port)), p.cfg.Timeout)
		if err == nil {
			u.Reachable, u.By = true, fmt.Sprintf("tcp/%d %s", port, answer)
			return u
		}
		tried = append(tried, fmt.Sprintf("tcp/%d: %v", port, err))
		if u.By != "" {
			u.By += " and "
		}
		u.By += fmt.Sprintf("tcp/%d", port)
	}
	for i, s := range tried {
		if i > 0 {
			u.Err += "; "
		}
		u.Err += s
	}
	return u
}

// errNoAnswer is a TCP connection attempt that got nothing back.
var errNoAnswer = errors.New("no answer")

// tcpAnswer opens a TCP connection to dst from ns, and returns how the
// peer answered: "accepted" or "refused", both of which show its kernel
// reached. A connection made is reset at once (SO_LINGER 0), so that the
// service sees as little as can be. No answer within timeout, or an ICMP
// error, is an error.
func tcpAnswer(ctx context.Context, ns netns.NsHandle, dst netip.AddrPort, timeout time.Duration) (string, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	if dst.Addr().Is6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	}
	// Only the socket is made in the namespace: a connection in flight
	// then waits in the runtime's poller, not on a locked thread.
	var fd int
	open := func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	}
	var err error
	if netnsutil.InOther(ns) {
		err = netnsutil.Do(ns, open)
	} else {
		err = open()
	}
	if err != nil {
		return "", fmt.Errorf("socket: %w", err)
	}
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	f := os.NewFile(uintptr(fd), "probe-tcp")
	defer f.Close()
	classify := func(errno error) (string, error) {
		switch {
		case errno == nil:
			return "accepted", nil
		case errors.Is(errno, unix.ECONNREFUSED):
			return "refused", nil
		}
		return "", errno
	}
	if err := unix.Connect(fd, sa); !errors.Is(err, unix.EINPROGRESS) {
		return classify(err)
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	f.SetWriteDeadline(deadline)
	raw, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	waited := false
	var soErr error
	err = raw.Write(func(fd uintptr) bool {
		if !waited {
			waited = true
			return false // wait until the connection is settled
		}
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			soErr = err
		} else if v != 0 {
			soErr = unix.Errno(v)
		}
		return true
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", fmt.Errorf("%w in %s", errNoAnswer, timeout)
	}
	if err != nil {
		return "", err
	}
	return classify(soErr)
}
