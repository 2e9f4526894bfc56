package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/status"
)

// TestHealthUnderHeldConnections: clients that hold connections to the
// health port past its cap (keep-alive clients idle after an answer,
// clients that send nothing, clients that never read a /status answer)
// never keep kubelet's probes out: /healthz and /readyz, each on a new
// connection, answer throughout, and the daemon holds at most its cap.
func TestHealthUnderHeldConnections(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, netConf16)
	d := c.start(c.host(1))
	d.WaitReady()
	probes := testutil.Sample(10*time.Millisecond, func() (lapses []string) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := d.Get(path); code != http.StatusOK {
				lapses = append(lapses, fmt.Sprintf("%s: %d %s", path, code, body))
			}
		}
		return lapses
	})
	var closers []func()
	for _, held := range []struct {
		n      int
		req    string
		answer bool
	}{
		{2 * status.DefaultMaxConns, "GET /healthz HTTP/1.1\r\nHost: weft\r\n\r\n", true},
		{status.DefaultMaxConns, "", false},
		{status.DefaultMaxConns, "GET /status HTTP/1.1\r\nHost: weft\r\n\r\n", false},
		{status.DefaultMaxConns, "GET /healthz HTTP/1.1\r\nHost: weft\r\n\r\n", true},
	} {
		closers = append(closers, dialHealth(t, d, held.n, held.req, held.answer))
	}
	probes.Check(t, "kubelet's probe failed with the health port's cap reached")
	if n := heldByDaemon(t, d); n > status.DefaultMaxConns {
		t.Errorf("the daemon holds %d health connections; its cap is %d", n, status.DefaultMaxConns)
	}
	for _, close := range closers {
		close()
	}
}

// heldByDaemon counts the daemon's established connections on its health
// port, as the kernel sees them.
func heldByDaemon(t *testing.T, d *daemon) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", d.Host.Name, "ss", "-Htn", "state", "established",
		fmt.Sprintf("( sport = :%d )", daemontest.HealthPort)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	return len(strings.Fields(strings.TrimSpace(string(out)))) / 4 // Recv-Q Send-Q Local Peer
}
