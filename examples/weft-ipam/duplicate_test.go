package main

import (
	"strings"
	"testing"
)

// TestSecondSandboxGetsItsOwnIP is issue 29's second item: ADD of
// default/web-0 in sandbox 1, then ADD of the same pod in sandbox 2 with
// no DEL of sandbox 1 (the runtime re-creating a sandbox whose teardown
// failed). Sandbox 1's reservation is live until its DEL or a GC, so
// sandbox 2 gets another IP, as host-local gives it, and sandbox 1 keeps
// its own. Once sandbox 1's DEL comes, the pod's next sandbox gets the
// pod's first IP back: the pod is remembered by it.
func TestSecondSandboxGetsItsOwnIP(t *testing.T) {
	n := newNetwork(t, "10.244.3.1/24", "")
	first := n.add("sandbox-1", podArgs("web-0"))[0]
	second := n.add("sandbox-2", podArgs("web-0"))[0]
	if second == first {
		t.Errorf("sandbox 2 got %s, which sandbox 1 still holds", first)
	}
	r := n.reservations()
	if h := r[strings.TrimSuffix(first, "/24")]; h != "sandbox-1\r\neth0" {
		t.Errorf("sandbox 1's %s is now held by %q", first, h)
	}
	if h := r[strings.TrimSuffix(second, "/24")]; h != "sandbox-2\r\neth0" {
		t.Errorf("sandbox 2's %s is held by %q", second, h)
	}
	// A repeated ADD of either sandbox finds its own IP.
	if got := n.add("sandbox-1", podArgs("web-0"))[0]; got != first {
		t.Errorf("repeated ADD of sandbox 1: %s, want %s", got, first)
	}
	if got := n.add("sandbox-2", podArgs("web-0"))[0]; got != second {
		t.Errorf("repeated ADD of sandbox 2: %s, want %s", got, second)
	}
	// Sandbox 1's DEL comes at last; then sandbox 2's; the next sandbox
	// gets the pod's first IP.
	n.del("sandbox-1")
	n.del("sandbox-2")
	if got := n.add("sandbox-3", podArgs("web-0"))[0]; got != first {
		t.Errorf("after both DELs the pod got %s, want its first %s", got, first)
	}
	// With a GC instead of the DEL: sandbox 4 (no DEL of 3) gets another
	// IP; a GC that leaves sandbox 3 out frees its IP for sandbox 5.
	fourth := n.add("sandbox-4", podArgs("web-0"))[0]
	if fourth == first {
		t.Errorf("sandbox 4 got %s, which sandbox 3 still holds", first)
	}
	gc := strings.Replace(n.conf, `"ipam"`, `"cni.dev/valid-attachments": [{"containerID": "sandbox-4", "ifname": "eth0"}], "ipam"`, 1)
	if out, err := n.call("GC", "", "", gc); err != nil {
		t.Fatalf("GC: %v\n%s", err, out)
	}
	n.del("sandbox-4")
	if got := n.add("sandbox-5", podArgs("web-0"))[0]; got != first {
		t.Errorf("after the GC and sandbox 4's DEL the pod got %s, want its first %s", got, first)
	}
}
