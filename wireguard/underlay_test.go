//go:build linux

package wireguard

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testutil"
)

// TestUnderlayCarriesOnlyUDP captures every frame on the segment's bridge
// ports while pods ping each other over both families, and finds only
// WireGuard's UDP to and from the listen ports (and the underlay's own
// ARP and neighbour discovery): no inner packet, no pod address, in the
// clear.
func TestUnderlayCarriesOnlyUDP(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is required (it is in .ci/run's packages)")
	}
	noLeaks(t)
	cfg, _ := ParseConfig(nil)
	seg, nodes := newNodes(t, 3, cfg)
	for _, nd := range nodes {
		nd.start(t, nd.config(), leasesOf(nodes, nd))
	}
	for _, nd := range nodes {
		waitSynced(t, nd, 0)
	}

	// -i any in the bridge's namespace sees every port: the wire itself.
	cmd := exec.Command("ip", "netns", "exec", seg.Bridge.Name, "tcpdump", "-i", "any", "-nn", "-l", "-q", "-p")
	out := &testutil.SyncBuffer{}
	cmd.Stdout = out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGINT)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
	}
	t.Cleanup(stop)
	ready := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		closed := false
		for s.Scan() {
			if !closed && strings.Contains(s.Text(), "listening on") {
				close(ready)
				closed = true
			}
		}
		if !closed {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start")
	}

	pingAll(t, nodes, true, true)
	// What the pings sent is on its way through tcpdump's buffers: wait
	// for it before stopping the capture.
	testutil.WaitFor(t, 10*time.Second, "WireGuard packets in the capture", func() bool {
		return strings.Count(out.String(), ".51821") >= 6 && strings.Count(out.String(), ".51820") >= 6
	})
	stop()

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	udp := 0
	for _, l := range lines {
		switch {
		case strings.Contains(l, "10.244.") || strings.Contains(l, "fd00:244:"):
			t.Errorf("an overlay address on the underlay, in the clear: %s", l)
		case strings.Contains(l, "UDP"):
			if !(strings.Contains(l, ".51820") || strings.Contains(l, ".51821")) {
				t.Errorf("UDP not to or from a WireGuard listen port: %s", l)
			}
			udp++
		case strings.Contains(l, "echo"):
			t.Errorf("an ICMP echo in the clear on the underlay: %s", l)
		case strings.Contains(l, "ARP"), strings.Contains(l, "ICMP6"), strings.Contains(l, "igmp"):
			// The underlay's own address resolution, neighbour
			// discovery and multicast membership reports.
		case l == "":
		default:
			t.Errorf("unexpected frame on the underlay: %s", l)
		}
	}
	if udp == 0 {
		t.Fatalf("no WireGuard packet captured; the capture saw:\n%s", out)
	}
	t.Logf("%d WireGuard packets on the underlay, nothing else but ARP, ND and IGMP", udp)
}
