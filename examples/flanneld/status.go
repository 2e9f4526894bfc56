package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	weftagent "github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/probe"
	"github.com/weftnet/weft/status"
)

// statusView serves /status and on-demand probes from the Network and
// Prober once they exist, and a not-ready Document before.
type statusView struct {
	ready func() (bool, string)

	mu     sync.Mutex
	net    *weftagent.Network
	prober *probe.Prober
}

func newStatusView(ready func() (bool, string)) *statusView {
	return &statusView{ready: ready}
}

func (v *statusView) set(n *weftagent.Network, p *probe.Prober) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.net, v.prober = n, p
}

// mount adds the status paths to mux, for one server: with a Capacity of
// its own, so that the clients of another server (the open health port)
// never take this one's answers (root's socket), and with pages of at
// most maxPage peers (0: as the client asks).
func (v *statusView) mount(mux *http.ServeMux, maxPage int) {
	m := &statusMount{v: v, src: status.Source{Ready: v.ready, Capacity: status.NewCapacity(status.DefaultCapacity), MaxPage: maxPage}}
	mux.Handle(status.Path, m)
	mux.Handle(status.ProbePath, m)
}

// statusMount is one server's status handler, made again only when the
// Network or Prober changes, not per request.
type statusMount struct {
	v *statusView

	mu  sync.Mutex
	src status.Source // what h serves
	h   http.Handler
}

func (m *statusMount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.v.mu.Lock()
	n, p := m.v.net, m.v.prober
	m.v.mu.Unlock()
	m.mu.Lock()
	if m.h == nil || m.src.Network != n || m.src.Prober != p {
		m.src.Network, m.src.Prober = n, p
		m.h = m.src.Handler()
	}
	h := m.h
	m.mu.Unlock()
	h.ServeHTTP(w, r)
}

// socketMaxConns caps the status socket's connections.
const socketMaxConns = 64

// serveStatusSocket serves the status on a unix socket at path, mode
// 0600: root's, as the daemon's own state is. A socket file left by a
// daemon that died is replaced; one a live daemon listens on is left to
// it, and this one serves none (the health server still does).
func serveStatusSocket(path string, v *statusView, log *slog.Logger) (stop func()) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Warn("no status socket: cannot create its directory", "path", path, "err", err)
		return func() {}
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		log.Warn("no status socket: another process serves it; is a second flanneld running?", "path", path)
		return func() {}
	}
	// Only a socket is ever removed: a --status-socket mistyped onto a
	// file must not delete it.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			log.Warn("no status socket: the path exists and is not a socket", "path", path, "mode", fi.Mode().String())
			return func() {}
		}
		if err := os.Remove(path); err != nil {
			log.Warn("no status socket: cannot remove the stale one", "path", path, "err", err)
			return func() {}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Warn("no status socket", "path", path, "err", err)
		return func() {}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		log.Warn("no status socket", "path", path, "err", err)
		return func() {}
	}
	// Connecting needs write permission on the socket, which the usual
	// umask (022) already leaves to root alone; 0600 makes it so whatever
	// the umask. (Setting the umask around Listen instead would change it
	// for the whole process, under every goroutine creating files.)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		log.Warn("no status socket: cannot restrict it to root", "path", path, "err", err)
		return func() {}
	}
	ours, err := os.Lstat(path)
	if err != nil {
		l.Close()
		log.Warn("no status socket", "path", path, "err", err)
		return func() {}
	}
	// Closing must not unlink the path: a daemon started since may
	// have put its own socket there.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	mux := http.NewServeMux()
	v.mount(mux, 0)
	// Root's clients, few: the cap guards only against a stuck script.
	srv := status.NewServer(mux, status.Limits{MaxConns: socketMaxConns}, log.With("server", "status socket"))
	go srv.Serve(rootOnly{l.(*net.UnixListener), log})
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if now, err := os.Lstat(path); err == nil && os.SameFile(ours, now) {
			os.Remove(path)
		}
	}
}

// rootOnly accepts connections from root and from this process's user
// alone, by the kernel's word (SO_PEERCRED): the socket's mode says the
// same, but only once Chmod has run after Listen.
type rootOnly struct {
	*net.UnixListener
	log *slog.Logger
}

func (l rootOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid := -1
		if raw, err := c.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
					uid = int(cred.Uid)
				}
			})
		}
		if uid == 0 || uid == os.Geteuid() {
			return c, nil
		}
		l.log.Warn("refused a status connection from another user", "uid", uid)
		c.Close()
	}
}

// runProber probes the peers until ctx is done. A prober that cannot
// start (no CAP_NET_RAW) turns probing off, with a warning: nothing else
// depends on it.
func runProber(ctx context.Context, p *probe.Prober, log *slog.Logger) {
	err := p.Run(ctx)
	if err != nil && ctx.Err() == nil {
		log.Warn("node-to-node probing is off", "err", err)
	}
}

// probeReadiness is the --probe-affects-readiness check: the node is not
// ready while no peer it has probed answers full-size packets over the
// overlay (each unreachable or behind a path MTU black hole), which says
// its own overlay or underlay is cut; one failing peer is that peer's
// problem.
func probeReadiness(p *probe.Prober) (bool, string) {
	c := p.Counts()
	if failing := c.Unreachable + c.MTUBlackHoles; failing > 0 && c.Reachable-c.MTUBlackHoles == 0 {
		if c.MTUBlackHoles == 0 {
			return false, fmt.Sprintf("every peer probed (%d) is unreachable over the overlay", c.Unreachable)
		}
		return false, fmt.Sprintf("no peer probed answers full-size packets over the overlay: %d unreachable, %d behind a path MTU black hole (weftctl peers --failing)", c.Unreachable, c.MTUBlackHoles)
	}
	return true, ""
}
