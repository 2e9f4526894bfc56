package netnstest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// An Echo is a UDP echo server bound inside a namespace.
type Echo struct {
	conn *net.UDPConn
	Addr netip.AddrPort
}

// ListenEcho starts a UDP echo server on addr (port 0 picks one) inside the
// namespace, stopped by t.Cleanup.
func (n *Namespace) ListenEcho(t T, addr netip.Addr) *Echo {
	t.Helper()
	var conn *net.UDPConn
	err := n.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("netnstest: listen on %s in %s: %v", addr, n.Name, err)
	}
	e := &Echo{conn: conn, Addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			k, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			conn.WriteToUDPAddrPort(buf[:k], from)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return e
}

// Exchange sends payload from src (an address in the namespace) to an echo
// server at dst and waits up to timeout for the echo. It returns nil only
// if the same bytes came back from dst.
func (n *Namespace) Exchange(src netip.Addr, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	var conn *net.UDPConn
	err := n.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return fmt.Errorf("dial %s from %s in %s: %w", dst, src, n.Name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(payload); err != nil {
		return fmt.Errorf("send to %s: %w", dst, err)
	}
	buf := make([]byte, len(payload)+1)
	k, err := conn.Read(buf)
	if err != nil {
		return fmt.Errorf("no echo from %s within %v: %w", dst, timeout, err)
	}
	if !bytes.Equal(buf[:k], payload) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

// WaitExchange retries Exchange until it succeeds or the deadline passes,
// for paths that take a moment to settle (neighbour resolution, DAD).
func (n *Namespace) WaitExchange(src netip.Addr, dst netip.AddrPort, deadline time.Duration) error {
	_, err := n.CountExchanges(src, dst, 200*time.Millisecond, deadline)
	return err
}

// Exchanges is how an exchange went that CountExchanges retried.
type Exchanges struct {
	// Attempts is how many exchanges were tried, the last the one that
	// succeeded (if any).
	Attempts int
	// First is the first attempt's time, and FirstErr its failure (nil
	// if it succeeded).
	First    time.Duration
	FirstErr error
	// Took is the time until the last attempt ended.
	Took time.Duration
}

// CountExchanges is WaitExchange, saying how many attempts it took: the
// first waits up to first for its echo, as do the ones after it, until
// the deadline passes. A path that carries the first datagram sent over
// it succeeds at once; one that drops it needs a second attempt, however
// soon the path is whole.
func (n *Namespace) CountExchanges(src netip.Addr, dst netip.AddrPort, first, deadline time.Duration) (Exchanges, error) {
	start := time.Now()
	end := start.Add(deadline)
	payload := []byte("weft " + src.String() + " -> " + dst.String())
	var x Exchanges
	for {
		t0 := time.Now()
		err := n.Exchange(src, dst, payload, first)
		x.Attempts++
		x.Took = time.Since(start)
		if x.Attempts == 1 {
			x.First, x.FirstErr = time.Since(t0), err
		}
		if err == nil {
			return x, nil
		}
		if time.Now().After(end) {
			return x, err
		}
		time.Sleep(20 * time.Millisecond) // an immediate failure (ICMP refused) must not spin
	}
}
