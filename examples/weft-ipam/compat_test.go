package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// hostLocal is Debian's host-local plugin (package containernetworking-
// plugins). WEFT_REQUIRE_HOSTLOCAL, set by .ci/run, turns its absence from
// a skip into a failure.
const hostLocal = "/usr/lib/cni/host-local"

func requireHostLocal(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(hostLocal); err == nil {
		return
	}
	if os.Getenv("WEFT_REQUIRE_HOSTLOCAL") != "" {
		t.Fatalf("%s is missing and WEFT_REQUIRE_HOSTLOCAL is set: apt-get install containernetworking-plugins", hostLocal)
	}
	t.Skipf("%s is missing: apt-get install containernetworking-plugins", hostLocal)
}

// hostLocalConf is n's network for host-local: the same name, data
// directory and subnet.
func (n *network) hostLocalConf() string {
	return `{"cniVersion": "0.4.0", "name": "cbr0", "ipam": {"type": "host-local", "dataDir": "` + n.dataDir + `", "ranges": [[{"subnet": "10.244.3.0/24"}]]}}`
}

func (n *network) hostLocal(command, container string) string {
	n.t.Helper()
	cmd := n.command(command, container, "", n.hostLocalConf())
	cmd.Path, cmd.Args = hostLocal, []string{hostLocal}
	out, err := cmd.Output()
	if err != nil {
		n.t.Fatalf("host-local %s %s: %v\n%s", command, container, err, out)
	}
	if command != "ADD" {
		return ""
	}
	var r struct{ IPs []struct{ Address string } }
	if err := json.Unmarshal(out, &r); err != nil || len(r.IPs) != 1 {
		n.t.Fatalf("host-local ADD: %v\n%s", err, out)
	}
	return r.IPs[0].Address
}

// TestHostLocalCompat: a directory written by the real host-local is read
// correctly, and the reverse. Each plugin sees the other's reservations
// (no IP is given twice), releases the other's containers, and is not
// disturbed by the other's files: weft's pod records included.
func TestHostLocalCompat(t *testing.T) {
	requireHostLocal(t)
	n := newNetwork(t, "10.244.3.1/24", "")
	taken := map[string]string{}
	claim := func(who, ip string) {
		t.Helper()
		if other, dup := taken[ip]; dup {
			t.Fatalf("%s and %s both got %s", other, who, ip)
		}
		taken[ip] = who
	}
	// host-local first, then weft in the same directory, interleaved.
	claim("h1", n.hostLocal("ADD", "h1"))
	claim("h2", n.hostLocal("ADD", "h2"))
	claim("w1", n.add("w1", podArgs("w1"))[0])
	claim("h3", n.hostLocal("ADD", "h3"))
	claim("w2", n.add("w2", podArgs("w2"))[0])
	if len(taken) != 5 {
		t.Fatalf("taken: %v", taken)
	}
	// weft releases a host-local container, host-local a weft one.
	n.del("h2")
	n.hostLocal("DEL", "w1")
	r := n.reservations()
	for ip, who := range taken {
		_, held := r[strings.Split(ip, "/")[0]]
		if want := who != "h2" && who != "w1"; held != want {
			t.Errorf("%s (%s): held %v, want %v", ip, who, held, want)
		}
	}
	// Round-robin carries over: each continues from the other's last IP.
	if got := n.hostLocal("ADD", "h4"); got != "10.244.3.7/24" {
		t.Errorf("host-local after weft: %s, want .7 after weft's .6", got)
	}
	if got := n.add("w3", ""); got[0] != "10.244.3.8/24" {
		t.Errorf("weft after host-local: %s, want .8", got[0])
	}
	// A weft pod restarted while host-local handed out IPs in between
	// still gets its IP back: host-local never took it (round-robin moved
	// on), and weft remembers it.
	n.del("w2")
	n.hostLocal("ADD", "h5")
	if got := n.add("w2b", podArgs("w2"))[0]; got != "10.244.3.6/24" {
		t.Errorf("w2 after a restart: %s, want its .6", got)
	}
	// host-local's CHECK of its own container still works beside weft's
	// records.
	n.hostLocal("CHECK", "h4")
}
