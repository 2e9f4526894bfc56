//go:build linux

// Package nlwatch delivers a namespace's link, route and address
// notifications to a datapath, which reconciles when one departs from what
// it wants.
//
// Watch subscribes and returns a stop function that waits until every
// goroutine it started has ended. A subscription that the kernel ends (a
// receive buffer overrun loses notifications) is reported through Lost
// and made again, so the caller reconciles once, since anything may have
// changed meanwhile.
package nlwatch

import (
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/netnsutil"
)

// Handlers are called from the watch's goroutines, one per kind; they must
// not block.
type Handlers struct {
	Link  func(netlink.LinkUpdate)
	Route func(netlink.RouteUpdate)
	Addr  func(netlink.AddrUpdate)
	// Lost is called when notifications may have been lost.
	Lost func(error)
}

// Watch subscribes, in ns (the zero handle: the caller's), to the kinds
// that have a handler.
func Watch(ns netns.NsHandle, h Handlers) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var nsp *netns.NsHandle
	if netnsutil.InOther(ns) {
		nsp = &ns
	}
	lost := func(err error) {
		select {
		case <-done:
		default:
			if h.Lost != nil {
				h.Lost(err)
			}
		}
	}
	if h.Link != nil {
		run(&wg, done, lost, func(sub <-chan struct{}) error {
			ch := make(chan netlink.LinkUpdate, 256)
			err := netlink.LinkSubscribeWithOptions(ch, sub, netlink.LinkSubscribeOptions{Namespace: nsp, ErrorCallback: lost, ReceiveBufferSize: 1 << 20})
			if err == nil {
				for u := range ch {
					h.Link(u)
				}
			}
			return err
		})
	}
	if h.Route != nil {
		run(&wg, done, lost, func(sub <-chan struct{}) error {
			ch := make(chan netlink.RouteUpdate, 1024)
			err := netlink.RouteSubscribeWithOptions(ch, sub, netlink.RouteSubscribeOptions{Namespace: nsp, ErrorCallback: lost, ReceiveBufferSize: 4 << 20})
			if err == nil {
				for u := range ch {
					h.Route(u)
				}
			}
			return err
		})
	}
	if h.Addr != nil {
		run(&wg, done, lost, func(sub <-chan struct{}) error {
			ch := make(chan netlink.AddrUpdate, 256)
			err := netlink.AddrSubscribeWithOptions(ch, sub, netlink.AddrSubscribeOptions{Namespace: nsp, ErrorCallback: lost, ReceiveBufferSize: 1 << 20})
			if err == nil {
				for u := range ch {
					h.Addr(u)
				}
			}
			return err
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// run keeps one subscription going until done: each round subscribes and
// reads until the channel closes (done, or an error the library ended it
// for), then, unless done, reports the loss and subscribes again.
func run(wg *sync.WaitGroup, done <-chan struct{}, lost func(error), sub func(<-chan struct{}) error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			// Each round has its own done channel: the library closes
			// its socket when that is closed.
			roundDone := make(chan struct{})
			finished := make(chan struct{})
			go func() {
				select {
				case <-done:
				case <-finished:
				}
				close(roundDone)
			}()
			err := sub(roundDone)
			close(finished)
			select {
			case <-done:
				return
			default:
			}
			if err != nil {
				lost(err)
			} else {
				lost(errRestarted)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Second):
			}
		}
	}()
}

type restartErr struct{}

func (restartErr) Error() string { return "kernel notifications ended; subscribing again" }

var errRestarted error = restartErr{}
