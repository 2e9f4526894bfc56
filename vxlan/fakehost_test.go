//go:build linux

package vxlan

import (
	"encoding/binary"
	"github.com/weftnet/weft/lease"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeHost is a kernel in memory, for the control-plane scale harness,
// where thousands of agents share one machine that cannot hold their
// kernels: links and addresses, and the routes, nexthops, neighbours and
// FDB entries the reconciler writes, kept compactly and listed back as the
// kernel would, so that the reconciler runs unchanged against it (a resync
// of what it wrote writes nothing). It sends no notifications: nothing
// else changes its state.
type fakeHost struct {
	mu      sync.Mutex
	links   map[int]netlink.Link
	addrs   map[int][]netlink.Addr
	next    int
	nhs     map[uint32]nexthop
	routes  map[routeKey]route
	neighs  map[netip.Addr]neigh
	fdbs    map[lease.MAC]fdb
	writes  atomic.Int64
	onRoute func(dst netip.Prefix) // called on each route written, unlocked; may be nil
}

type routeKey struct {
	dst    netip.Prefix
	metric uint32
}

// underlayIndex is the fake's one underlay interface, eth0.
const underlayIndex = 2

// newFakeHost returns a host whose eth0 holds public, on a prefix of
// bits.
func newFakeHost(public netip.Addr, bits int) *fakeHost {
	h := &fakeHost{
		links: map[int]netlink.Link{}, addrs: map[int][]netlink.Addr{}, next: underlayIndex + 1,
		nhs: map[uint32]nexthop{}, routes: map[routeKey]route{}, neighs: map[netip.Addr]neigh{}, fdbs: map[lease.MAC]fdb{},
	}
	h.links[underlayIndex] = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: underlayIndex, MTU: 1500, Flags: net.FlagUp}}
	h.addrs[underlayIndex] = []netlink.Addr{{IPNet: &net.IPNet{IP: public.AsSlice(), Mask: net.CIDRMask(bits, public.BitLen())}, LinkIndex: underlayIndex}}
	return h
}

func (h *fakeHost) handle() (linkHandle, error) { return fakeLinks{h}, nil }
func (h *fakeHost) dialRoute() (routeConn, error) {
	return fakeRoutes{h}, nil
}
func (h *fakeHost) subscribe(bool) (notifications, error) {
	return &fakeNotifier{done: make(chan struct{})}, nil
}
func (h *fakeHost) subscribeAddrs(chan<- netlink.AddrUpdate, <-chan struct{}, func(error)) error {
	return nil
}

// AddrList and SubscribeAddrs make the fake an agent.Host, for the
// Network the scale harness runs on it.
func (h *fakeHost) AddrList() ([]netlink.Addr, error) {
	return fakeLinks{h}.AddrList(nil, netlink.FAMILY_ALL)
}

func (h *fakeHost) SubscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	return h.subscribeAddrs(ch, done, onErr)
}

// counts returns how many routes, neighbours and FDB entries it holds.
func (h *fakeHost) counts() (routes, neighs, fdbs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.routes), len(h.neighs), len(h.fdbs)
}

type fakeNotifier struct {
	once sync.Once
	done chan struct{}
}

func (n *fakeNotifier) read(func(uint16, []byte)) error {
	select {
	case <-n.done:
		return errClosed
	case <-time.After(250 * time.Millisecond):
		return nil
	}
}
func (n *fakeNotifier) close() { n.once.Do(func() { close(n.done) }) }

// fakeLinks is the links and addresses half.
type fakeLinks struct{ h *fakeHost }

func (f fakeLinks) Close() {}

func (f fakeLinks) LinkByIndex(i int) (netlink.Link, error) {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	if l, ok := f.h.links[i]; ok {
		return l, nil
	}
	return nil, netlink.LinkNotFoundError{}
}

func (f fakeLinks) LinkByName(name string) (netlink.Link, error) {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	for _, l := range f.h.links {
		if l.Attrs().Name == name {
			return l, nil
		}
	}
	return nil, netlink.LinkNotFoundError{}
}

func (f fakeLinks) LinkAdd(l netlink.Link) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	l.Attrs().Index = f.h.next
	f.h.links[f.h.next] = l
	f.h.next++
	return nil
}

func (f fakeLinks) LinkDel(l netlink.Link) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	delete(f.h.links, l.Attrs().Index)
	delete(f.h.addrs, l.Attrs().Index)
	return nil
}

func (f fakeLinks) LinkSetMTU(l netlink.Link, mtu int) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	l.Attrs().MTU = mtu
	return nil
}

func (f fakeLinks) LinkSetHardwareAddr(l netlink.Link, hw net.HardwareAddr) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	l.Attrs().HardwareAddr = hw
	return nil
}

func (f fakeLinks) LinkSetUp(l netlink.Link) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	l.Attrs().Flags |= net.FlagUp
	return nil
}

func (f fakeLinks) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	var out []netlink.Addr
	for i, as := range f.h.addrs {
		if l != nil && l.Attrs().Index != i {
			continue
		}
		for _, a := range as {
			v4 := a.IP.To4() != nil
			if family == netlink.FAMILY_ALL || family == netlink.FAMILY_V4 && v4 || family == netlink.FAMILY_V6 && !v4 {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

func (f fakeLinks) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	a.LinkIndex = l.Attrs().Index
	f.h.addrs[a.LinkIndex] = append(f.h.addrs[a.LinkIndex], *a)
	return nil
}

func (f fakeLinks) AddrDel(l netlink.Link, a *netlink.Addr) error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	as := f.h.addrs[l.Attrs().Index]
	for i := range as {
		if as[i].IPNet.String() == a.IPNet.String() {
			f.h.addrs[l.Attrs().Index] = append(as[:i:i], as[i+1:]...)
			return nil
		}
	}
	return unix.EADDRNOTAVAIL
}

// fakeRoutes is the reconciler's half.
type fakeRoutes struct{ h *fakeHost }

func (f fakeRoutes) close() {}

func (f fakeRoutes) exec(reqs []request) ([]error, error) {
	h := f.h
	errs := make([]error, len(reqs))
	var routed []netip.Prefix
	h.mu.Lock()
	for i, req := range reqs {
		errs[i] = h.apply(req, &routed)
	}
	h.mu.Unlock()
	h.writes.Add(int64(len(reqs)))
	if h.onRoute != nil {
		for _, dst := range routed {
			h.onRoute(dst)
		}
	}
	return errs, nil
}

// apply makes one write, with the kernel's answers to the cases the
// reconciler relies on: an exclusive create of what exists, a deletion of
// what does not.
func (h *fakeHost) apply(req request, routed *[]netip.Prefix) error {
	excl := req.flags&unix.NLM_F_EXCL != 0
	switch req.typ {
	case unix.RTM_NEWNEXTHOP:
		n, _ := parseNexthop(req.body)
		if _, ok := h.nhs[n.id]; ok && excl {
			return unix.EEXIST
		}
		h.nhs[n.id] = n
	case unix.RTM_DELNEXTHOP:
		var id uint32
		forEachAttr(req.body[8:], func(typ uint16, v []byte) {
			if typ == unix.NHA_ID && len(v) == 4 {
				id = binary.NativeEndian.Uint32(v)
			}
		})
		if _, ok := h.nhs[id]; !ok {
			return unix.ENOENT
		}
		delete(h.nhs, id)
		for k, r := range h.routes {
			if r.nhid == id {
				delete(h.routes, k) // the kernel takes a nexthop's routes along
			}
		}
	case unix.RTM_NEWROUTE:
		r, _ := parseRoute(req.body)
		k := routeKey{r.dst, r.metric}
		if _, ok := h.routes[k]; ok && excl {
			return unix.EEXIST
		}
		h.routes[k] = r
		*routed = append(*routed, r.dst)
	case unix.RTM_DELROUTE:
		r, _ := parseRoute(req.body)
		k := routeKey{r.dst, r.metric}
		if _, ok := h.routes[k]; !ok {
			return unix.ESRCH
		}
		delete(h.routes, k)
	case unix.RTM_NEWNEIGH:
		if e, ok := parseFDB(req.body); ok {
			h.fdbs[e.mac] = e
		} else if n, ok := parseNeigh(req.body); ok {
			h.neighs[n.ip] = n
		}
	case unix.RTM_DELNEIGH:
		if e, ok := parseFDB(req.body); ok {
			if _, ok := h.fdbs[e.mac]; !ok {
				return unix.ENOENT
			}
			delete(h.fdbs, e.mac)
		} else if n, ok := parseNeigh(req.body); ok {
			if _, ok := h.neighs[n.ip]; !ok {
				return unix.ENOENT
			}
			delete(h.neighs, n.ip)
		}
	}
	return nil
}

// dump lists what it holds as the kernel's messages would say it.
func (f fakeRoutes) dump(typ uint16, body []byte, _ func(), fn func(uint16, []byte) error) error {
	h := f.h
	var msgs [][]byte
	h.mu.Lock()
	switch typ {
	case unix.RTM_GETNEXTHOP:
		for _, n := range h.nhs {
			msgs = append(msgs, n.addRequest().body)
		}
	case unix.RTM_GETROUTE:
		for _, r := range h.routes {
			if len(body) == 0 || body[0] == family(r.dst.Addr()) {
				msgs = append(msgs, r.addRequest(true).body)
			}
		}
	case unix.RTM_GETNEIGH:
		if len(body) > 0 && body[0] == unix.AF_BRIDGE {
			for _, e := range h.fdbs {
				msgs = append(msgs, e.addRequest().body)
			}
		} else {
			for _, n := range h.neighs {
				if len(body) == 0 || body[0] == family(n.ip) {
					msgs = append(msgs, n.addRequest().body)
				}
			}
		}
	}
	h.mu.Unlock()
	for _, m := range msgs {
		// A dump answers RTM_GET* with RTM_NEW* messages, two below.
		if err := fn(typ-2, m); err != nil {
			return err
		}
	}
	return nil
}
