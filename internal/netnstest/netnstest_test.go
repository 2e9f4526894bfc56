package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSegment builds three hosts and checks that they reach each other over
// the shared segment, on IPv4 and IPv6, and that cleanup removes every
// namespace the test made.
func TestSegment(t *testing.T) {
	var names []string
	t.Run("traffic", func(t *testing.T) {
		s := NewSegment(t, 3)
		names = append(names, s.Bridge.Name)
		for _, h := range s.Hosts {
			names = append(names, h.Name)
		}
		for _, from := range s.Hosts {
			for _, to := range s.Hosts {
				if from == to {
					continue
				}
				echo := to.ListenEcho(t, to.Addr.Addr())
				if err := from.WaitExchange(from.Addr.Addr(), echo.Addr, 5*time.Second); err != nil {
					t.Errorf("host %d -> host %d over IPv4: %v", from.Index, to.Index, err)
				}
				echo6 := to.ListenEcho(t, to.Addr6.Addr())
				if err := from.WaitExchange(from.Addr6.Addr(), echo6.Addr, 5*time.Second); err != nil {
					t.Errorf("host %d -> host %d over IPv6: %v", from.Index, to.Index, err)
				}
			}
		}
	})
	if len(names) != 4 {
		t.Fatalf("made namespaces %v", names)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "weft-") {
			t.Errorf("namespace %q lacks the weft- prefix", n)
		}
		if _, err := os.Stat("/run/netns/" + n); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists after cleanup (%v)", n, err)
		}
	}
}

// TestRemoveStale: a namespace named by a process that no longer exists is
// swept; one of a live process (this one) is not.
func TestRemoveStale(t *testing.T) {
	RequirePrivileged(t)
	dead := fmt.Sprintf("weft-h9-%d-%s", 1<<22+7, randomSuffix()) // above pid_max's default: never alive
	if out, err := exec.Command("ip", "netns", "add", dead).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	alive := NewNamespace(t, "weft-live")
	removeStale()
	if _, err := os.Stat("/run/netns/" + dead); !os.IsNotExist(err) {
		exec.Command("ip", "netns", "del", dead).Run()
		t.Errorf("stale namespace %s survived (%v)", dead, err)
	}
	if _, err := os.Stat("/run/netns/" + alive.Name); err != nil {
		t.Errorf("live namespace %s was swept: %v", alive.Name, err)
	}
}
