package apitest_test

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/weftnet/weft/internal/netnstest"
)

// A proxy forwards TCP connections made to a host's address, port 6443,
// inside its namespace, to a target in the test's own namespace, where the
// in-process kube-apiserver listens: the simulated hosts' only way to it.
// Paused, it drops every connection and refuses new ones, which is what
// clients see of an API server that is down. (The in-process server
// cannot be started again on its port and certificate once stopped.)
type proxy struct {
	t      *testing.T
	h      *netnstest.Host
	target string
	addr   string

	mu   sync.Mutex
	l    net.Listener
	open []net.Conn
	wg   sync.WaitGroup
}

func newProxy(t *testing.T, h *netnstest.Host, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, h: h, target: target, addr: net.JoinHostPort(h.Addr.Addr().String(), "6443")}
	p.resume()
	t.Cleanup(p.pause)
	return p
}

// resume listens again.
func (p *proxy) resume() {
	p.t.Helper()
	var l net.Listener
	if err := p.h.Do(func() error {
		var err error
		l, err = net.Listen("tcp", p.addr)
		return err
	}); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.open = append(p.open, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer p.wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
}

// pause stops listening and cuts every connection. Pausing a paused proxy
// does nothing.
func (p *proxy) pause() {
	p.mu.Lock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
	p.mu.Unlock()
	p.wg.Wait()
}
