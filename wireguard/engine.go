//go:build linux

package wireguard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/netnsutil"
)

// Engine selects what runs WireGuard.
type Engine string

// The engines.
const (
	// EngineAuto uses the kernel's WireGuard, and wireguard-go in this
	// process when the kernel refuses the device (no module). The default.
	EngineAuto Engine = "auto"
	// EngineKernel uses the kernel's WireGuard only.
	EngineKernel Engine = "kernel"
	// EngineUserspace runs wireguard-go in this process, on a TUN device.
	EngineUserspace Engine = "userspace"
)

// wgClient is what the datapath configures a device through: wgctrl's
// calls. *wgctrl.Client is one, for the kernel's devices; userDev is one
// for a wireguard-go device in this process. Everything above it is the
// same code for both.
type wgClient interface {
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
	Close() error
}

// inNS runs f in ns (the zero handle: here).
func inNS(ns netns.NsHandle, f func() error) error {
	if !netnsutil.InOther(ns) {
		return f()
	}
	return netnsutil.Do(ns, f)
}

// kernelClient opens wgctrl's generic netlink client in ns: its socket
// belongs to the namespace it was made in.
func kernelClient(ns netns.NsHandle) (wgClient, error) {
	var c *wgctrl.Client
	err := inNS(ns, func() error {
		var err error
		c, err = wgctrl.New()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard: wgctrl: %w", err)
	}
	return c, nil
}

// createKernelDevice adds a kernel WireGuard link.
func createKernelDevice(nl *netlink.Handle, name string, mtu int) error {
	return nl.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
}

// kernelRefused reports whether err says the kernel has no WireGuard.
func kernelRefused(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EINVAL) ||
		strings.Contains(err.Error(), "not supported")
}

// userDev is a wireguard-go device in this process on a TUN device in a
// namespace.
type userDev struct {
	name  string
	index int
	dev   *device.Device

	mu       sync.Mutex
	stop     chan struct{} // closed to end the greeting in progress
	stopped  bool
	greeting sync.WaitGroup
	sock     *uapiSocket // nil without DatapathConfig.UAPIDir
}

// newUserDev creates the TUN device in ns and starts wireguard-go on it.
// Its UDP sockets are opened in ns too, whatever thread opens them.
func newUserDev(ns netns.NsHandle, nl *netlink.Handle, name string, mtu int, uapiDir string, log *slog.Logger) (*userDev, error) {
	var t tun.Device
	err := inNS(ns, func() error {
		var err error
		t, err = tun.CreateTUN(name, mtu)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard: create TUN device %s: %w", name, err)
	}
	link, err := nl.LinkByName(name)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("wireguard: TUN device %s vanished: %w", name, err)
	}
	// wireguard-go's own lines, at debug level: its handshakes and
	// keepalives are what to look at when a tunnel will not come up.
	debug := func(format string, args ...any) {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("wireguard-go: "+fmt.Sprintf(format, args...), "device", name)
		}
	}
	logger := &device.Logger{Verbosef: debug, Errorf: debug}
	d := device.NewDevice(t, &nsBind{Bind: conn.NewStdNetBind(), ns: ns}, logger)
	u := &userDev{name: name, index: link.Attrs().Index, dev: d}
	if uapiDir != "" {
		s, err := serveUAPI(uapiDir, name, d)
		if err != nil {
			// `wg show` will not see the device; the datapath does not
			// need the socket.
			log.Warn("the user-space device's configuration socket is not served", "device", name, "err", err)
		}
		u.sock = s
	}
	return u, nil
}

func (u *userDev) Device(name string) (*wgtypes.Device, error) {
	var b bytes.Buffer
	if err := u.dev.IpcGetOperation(&b); err != nil {
		return nil, fmt.Errorf("wireguard: read %s: %w", name, err)
	}
	return decodeUAPI(&b, name)
}

func (u *userDev) ConfigureDevice(name string, cfg wgtypes.Config) error {
	var b bytes.Buffer
	if err := encodeUAPI(&b, cfg); err != nil {
		return err
	}
	if err := u.dev.IpcSetOperation(&b); err != nil {
		return fmt.Errorf("wireguard: configure %s: %w", name, err)
	}
	return nil
}

// greetDelay is how long a device made anew waits before greeting a peer
// whose key is smaller than its own, unless a handshake with it has
// happened meanwhile.
const greetDelay = 2 * time.Second

// greet starts a handshake with each peer named: a device made anew has
// no session, while its peers may still hold the old one (this node
// restarted) and send into it, unanswered, until their rekey timeout
// (15 s or more) makes them handshake again. Two devices made at once
// (a cluster starting) must not both greet, or their handshakes cross and
// leave the two sides with different sessions until that same timeout: a
// device greets a peer with a larger key at once, and one with a smaller
// key only after greetDelay, and only if no handshake with it has happened
// by then.
func (u *userDev) greet(own Key, keys []Key) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped {
		return
	}
	if u.stop != nil {
		close(u.stop) // a newer set of peers replaces a pending greeting
	}
	stop := make(chan struct{})
	u.stop = stop
	u.greeting.Add(1)
	// Each handshake costs a Diffie-Hellman: thousands of peers take a
	// while, which the reconcile does not wait for.
	go func() {
		defer u.greeting.Done()
		// The device comes up on its own once wireguard-go reads the TUN
		// device's up event; until then it sends nothing. Up is
		// idempotent.
		if err := u.dev.Up(); err != nil {
			return
		}
		var later []Key
		for _, k := range keys {
			select {
			case <-stop:
				return
			default:
			}
			if bytes.Compare(k[:], own[:]) > 0 {
				u.hello(k)
			} else {
				later = append(later, k)
			}
		}
		if len(later) == 0 {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(greetDelay):
		}
		d, err := u.Device(u.name)
		if err != nil {
			return
		}
		shook := map[Key]bool{}
		for _, p := range d.Peers {
			shook[Key(p.PublicKey)] = !p.LastHandshakeTime.IsZero()
		}
		for _, k := range later {
			select {
			case <-stop:
				return
			default:
			}
			if !shook[k] {
				u.hello(k)
			}
		}
	}()
}

// hello makes the device start a handshake with peer k.
func (u *userDev) hello(k Key) {
	if p := u.dev.LookupPeer(device.NoisePublicKey(k)); p != nil {
		p.SendKeepalive()
	}
}

// Close stops the device and waits until its goroutines have ended; the
// TUN device goes with it.
func (u *userDev) Close() error {
	u.mu.Lock()
	u.stopped = true
	if u.stop != nil {
		close(u.stop)
		u.stop = nil
	}
	u.mu.Unlock()
	u.greeting.Wait()
	if u.sock != nil {
		u.sock.close()
	}
	u.dev.Close()
	<-u.dev.Wait()
	return nil
}

// closed reports whether wireguard-go has stopped the device by itself
// (its TUN device was deleted).
func (u *userDev) closed() bool {
	select {
	case <-u.dev.Wait():
		return true
	default:
		return false
	}
}

// nsBind opens wireguard-go's UDP sockets in a namespace: Open runs on a
// thread switched there, and a socket stays in the namespace it was made
// in.
type nsBind struct {
	conn.Bind
	ns netns.NsHandle
}

func (b *nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	err = inNS(b.ns, func() error {
		var err error
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	return fns, actual, err
}
