package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnsutil"
)

// A Namespace is a named network namespace created for one test.
type Namespace struct {
	Name   string
	Handle netns.NsHandle
	nl     *netlink.Handle
}

// NewNamespace creates a named namespace with loopback up, removed by
// t.Cleanup. The name is prefix, the process ID and a random suffix, so that
// parallel tests and packages never collide, and so that namespaces left by
// a process that died before its cleanups ran (a panic in a parallel test)
// can be recognised and removed by the next run.
func NewNamespace(t T, prefix string) *Namespace {
	t.Helper()
	removeStaleOnce.Do(removeStale)
	name := fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), randomSuffix())
	ns, err := newNamed(name)
	if err != nil {
		t.Fatalf("netnstest: create namespace %s: %v", name, err)
	}
	n := &Namespace{Name: name, Handle: ns}
	t.Cleanup(func() {
		if n.nl != nil {
			n.nl.Close()
		}
		n.Handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("netnstest: delete namespace %s: %v", name, err)
		}
	})
	if n.nl, err = netlink.NewHandleAt(ns); err != nil {
		t.Fatalf("netnstest: netlink handle in %s: %v", name, err)
	}
	lo, err := n.nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if err := n.nl.LinkSetUp(lo); err != nil {
		t.Fatalf("netnstest: loopback up in %s: %v", name, err)
	}
	return n
}

// newNamed creates a named namespace without leaving the calling thread in
// it: netns.NewNamed switches the thread, so it runs inside netnsutil.Do,
// which switches back.
func newNamed(name string) (netns.NsHandle, error) {
	cur, err := netns.Get()
	if err != nil {
		return netns.None(), err
	}
	defer cur.Close()
	var ns netns.NsHandle
	err = netnsutil.Do(cur, func() error {
		var err error
		ns, err = netns.NewNamed(name)
		return err
	})
	return ns, err
}

// Netlink returns a netlink handle bound to the namespace. It is closed with
// the namespace.
func (n *Namespace) Netlink() *netlink.Handle { return n.nl }

// Do runs f on a thread switched into the namespace. Sockets f opens stay
// in the namespace after Do returns.
func (n *Namespace) Do(f func() error) error { return netnsutil.Do(n.Handle, f) }

// AddrAdd adds addr to the named link.
func (n *Namespace) AddrAdd(t T, link string, addr netip.Prefix) {
	t.Helper()
	l, err := n.nl.LinkByName(link)
	if err != nil {
		t.Fatalf("netnstest: %s in %s: %v", link, n.Name, err)
	}
	a, err := netlink.ParseAddr(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if addr.Addr().Is6() {
		a.Flags |= unix.IFA_F_NODAD // usable at once, without waiting for duplicate address detection
	}
	if err := n.nl.AddrAdd(l, a); err != nil {
		t.Fatalf("netnstest: add %s to %s in %s: %v", addr, link, n.Name, err)
	}
}

// removeStaleOnce runs removeStale once per process: the first namespace a
// process makes sweeps up after processes that are gone.
var removeStaleOnce sync.Once

// removeStale deletes weft test namespaces whose creating process no longer
// exists.
func removeStale() {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) < 4 || parts[0] != "weft" {
			continue
		}
		pid, err := strconv.Atoi(parts[len(parts)-2])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			netns.DeleteNamed(e.Name())
		}
	}
}

// netnsDir is where named namespaces live.
const netnsDir = "/run/netns"

func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
