package netnstest

import (
	"fmt"
	"net/netip"
	"os/exec"
	"time"
)

// Ping sends one ICMP echo from src (an address in the namespace) to dst
// with the system's ping and waits up to a second for the reply: real
// traffic, through whatever the kernel routes it through.
func (n *Namespace) Ping(src, dst netip.Addr) error {
	out, err := exec.Command("ip", "netns", "exec", n.Name, "ping", "-n", "-c", "1", "-W", "1", "-I", src.String(), dst.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s -> %s in %s: %w\n%s", src, dst, n.Name, err, out)
	}
	return nil
}

// WaitPing retries Ping until a reply comes or the deadline passes, for
// paths that take a moment to settle (a tunnel's first handshake).
func (n *Namespace) WaitPing(src, dst netip.Addr, deadline time.Duration) error {
	end := time.Now().Add(deadline)
	for {
		err := n.Ping(src, dst)
		if err == nil || time.Now().After(end) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
