package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A config change must never release a live reservation: weft-ipam and
// Debian's host-local are driven through the same histories, each in its
// own data directory, and must agree on every reservation after every
// step, with no IP ever handed to two live containers.

// ipamRange is one "ranges" entry of a step's configuration.
type ipamRange struct{ subnet, start, end string }

func (r ipamRange) json() string {
	s := fmt.Sprintf(`{"subnet": %q`, r.subnet)
	if r.start != "" {
		s += fmt.Sprintf(`, "rangeStart": %q`, r.start)
	}
	if r.end != "" {
		s += fmt.Sprintf(`, "rangeEnd": %q`, r.end)
	}
	return s + "}"
}

// An ipamStep is one CNI call: ADD, DEL or CHECK of a container, under a
// network name and range.
type ipamStep struct {
	cmd, container, name string
	r                    ipamRange
}

func (s ipamStep) String() string {
	return fmt.Sprintf("%s %s on %s %s %s-%s", s.cmd, s.container, s.name, s.r.subnet, s.r.start, s.r.end)
}

// pluginStore is one plugin with its data directory. Network "shared" is
// a symlink to network "cbr0"'s directory, as when two network names
// share one store.
type pluginStore struct {
	t       *testing.T
	plugin  string // binary
	typ     string // ipam.type
	dataDir string
}

func newPluginStore(t *testing.T, plugin, typ string) *pluginStore {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "cbr0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("cbr0", filepath.Join(dir, "shared")); err != nil {
		t.Fatal(err)
	}
	return &pluginStore{t: t, plugin: plugin, typ: typ, dataDir: dir}
}

// run makes the call; for ADD it returns the address given.
func (p *pluginStore) run(s ipamStep) (string, error) {
	conf := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": %q, "ipam": {"type": %q, "dataDir": %q, "ranges": [[%s]]}}`,
		s.name, p.typ, p.dataDir, s.r.json())
	cmd := exec.Command(p.plugin)
	cmd.Env = []string{"CNI_COMMAND=" + s.cmd, "CNI_CONTAINERID=" + s.container, "CNI_NETNS=/var/run/netns/" + s.container,
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin"}
	cmd.Stdin = strings.NewReader(conf)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	if s.cmd != "ADD" {
		return "", nil
	}
	var r struct{ IPs []struct{ Address string } }
	if err := json.Unmarshal(out, &r); err != nil || len(r.IPs) != 1 {
		return "", fmt.Errorf("ADD result %s: %v", out, err)
	}
	return r.IPs[0].Address, nil
}

// reservations maps each reserved IP to its container, as host-local
// reads the store.
func (p *pluginStore) reservations() map[string]string {
	dir := filepath.Join(p.dataDir, "cbr0")
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == "lock" || strings.HasPrefix(e.Name(), "last_reserved_ip") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			p.t.Fatal(err)
		}
		out[e.Name()], _, _ = strings.Cut(string(data), "\r\n")
	}
	return out
}

// replay runs steps on both plugins and checks after every step that
// weft-ipam's store holds exactly the live containers' reservations, and
// host-local's at least those, with the same IPs; that both gave every ADD
// the same answer; and that no ADD handed out an IP a live container
// holds.
//
// host-local cannot find a container through a symlinked network
// directory (it walks the directory with filepath.Walk, which does not
// follow a symlinked root), so its DEL there frees nothing and its CHECK
// fails: there host-local is not the yardstick, the live set is.
func replay(t *testing.T, steps []ipamStep) {
	weft := newPluginStore(t, bin, "weft-ipam")
	host := newPluginStore(t, hostLocal, "host-local")
	liveW := map[string]string{}  // container -> IP, by weft-ipam's answers
	liveH := map[string]string{}  // and by host-local's
	leaked := map[string]string{} // IP -> container deleted through the symlink, for host-local
	diverged := false             // host-local has leaked since the start
	for i, s := range steps {
		gotW, errW := weft.run(s)
		gotH, errH := host.run(s)
		_, isLive := liveW[s.container]
		switch s.cmd {
		case "ADD":
			// Until host-local leaks, both hand out the same IPs (the
			// same round-robin); after, its leaked IPs are taken for it.
			if !diverged && ((errW == nil) != (errH == nil) || gotW != gotH) {
				t.Fatalf("step %d, %v: weft-ipam %q, %v; host-local %q, %v", i, s, gotW, errW, gotH, errH)
			}
			for _, p := range []struct {
				who  string
				got  string
				err  error
				live map[string]string
			}{{"weft-ipam", gotW, errW, liveW}, {"host-local", gotH, errH, liveH}} {
				if p.err != nil {
					continue
				}
				ip, _, _ := strings.Cut(p.got, "/")
				for c, held := range p.live {
					if held == ip && c != s.container {
						t.Fatalf("step %d, %v: %s gave %s, still %s's", i, s, p.who, ip, c)
					}
				}
				if _, again := p.live[s.container]; !again {
					p.live[s.container] = ip
				}
			}
		case "CHECK":
			if (errW == nil) != isLive {
				t.Fatalf("step %d, %v: weft-ipam's CHECK: %v; live: %v", i, s, errW, isLive)
			}
			_, liveForH := liveH[s.container]
			if s.name == "cbr0" && (errH == nil) != liveForH && !slices.Contains(slices.Collect(maps.Values(leaked)), s.container) {
				t.Fatalf("step %d, %v: host-local's CHECK: %v; live: %v", i, s, errH, liveForH)
			}
		case "DEL":
			if errW != nil || errH != nil {
				t.Fatalf("step %d, %v: weft-ipam %v; host-local %v", i, s, errW, errH)
			}
			if ip, ok := liveH[s.container]; ok && s.name == "shared" {
				leaked[ip], diverged = s.container, true
			}
			delete(liveW, s.container)
			delete(liveH, s.container)
		}
		byIP := func(live map[string]string) map[string]string {
			out := map[string]string{}
			for c, ip := range live {
				out[ip] = c
			}
			return out
		}
		if got, want := weft.reservations(), byIP(liveW); !maps.Equal(got, want) {
			t.Fatalf("step %d, %v: weft-ipam holds %v, want the live containers' %v", i, s, got, want)
		}
		got := host.reservations()
		for ip, c := range leaked {
			if got[ip] == c {
				delete(got, ip)
			} else {
				delete(leaked, ip) // given out again since
			}
		}
		if want := byIP(liveH); !maps.Equal(got, want) {
			t.Fatalf("step %d, %v: host-local holds %v, want the live containers' %v", i, s, got, want)
		}
	}
}

var (
	rangeA  = ipamRange{subnet: "10.250.0.0/29"}
	rangeB  = ipamRange{subnet: "10.251.0.0/29"}
	rangeA2 = ipamRange{subnet: "10.250.0.0/28", start: "10.250.0.8"}
	rangeA3 = ipamRange{subnet: "10.250.0.0/28", end: "10.250.0.5"}
)

// The roads the issue names, each a history.
func TestConfigChangeKeepsReservations(t *testing.T) {
	requireHostLocal(t)
	step := func(cmd, c, name string, r ipamRange) ipamStep { return ipamStep{cmd, c, name, r} }
	for _, tc := range []struct {
		name  string
		steps []ipamStep
	}{
		{"subnet", []ipamStep{
			step("ADD", "a1", "cbr0", rangeA), step("ADD", "a2", "cbr0", rangeA),
			step("ADD", "b1", "cbr0", rangeB),
			step("CHECK", "a1", "cbr0", rangeA), step("CHECK", "a1", "cbr0", rangeB),
			step("ADD", "a3", "cbr0", rangeA), step("ADD", "a4", "cbr0", rangeA),
			step("DEL", "a1", "cbr0", rangeB), step("ADD", "a5", "cbr0", rangeA),
		}},
		{"rangeStart", []ipamStep{
			step("ADD", "a1", "cbr0", ipamRange{subnet: "10.250.0.0/28"}), step("ADD", "a2", "cbr0", ipamRange{subnet: "10.250.0.0/28"}),
			step("ADD", "b1", "cbr0", rangeA2), step("CHECK", "a2", "cbr0", rangeA2),
			step("ADD", "a3", "cbr0", ipamRange{subnet: "10.250.0.0/28"}),
		}},
		{"rangeEnd", []ipamStep{
			step("ADD", "a1", "cbr0", rangeA2), step("ADD", "a2", "cbr0", rangeA2),
			step("ADD", "b1", "cbr0", rangeA3), step("CHECK", "a1", "cbr0", rangeA3),
			step("ADD", "a3", "cbr0", rangeA2),
		}},
		{"symlink", []ipamStep{
			step("ADD", "a1", "cbr0", rangeA), step("ADD", "a2", "cbr0", rangeA),
			step("ADD", "b1", "shared", rangeB), step("ADD", "b2", "shared", rangeB),
			step("CHECK", "a1", "cbr0", rangeA), step("ADD", "a3", "cbr0", rangeA),
			step("CHECK", "b1", "shared", rangeB), step("DEL", "b1", "shared", rangeB),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { replay(t, tc.steps) })
	}
}

// TestConfigChangeProperty drives random histories over the ranges and
// both network names, so that the check covers orders no one wrote down.
func TestConfigChangeProperty(t *testing.T) {
	requireHostLocal(t)
	ranges := []ipamRange{rangeA, rangeB, rangeA2, rangeA3, {subnet: "10.250.0.0/28"}}
	for run := range 3 {
		seed := rand.Uint64()
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 0))
			t.Logf("seed %d", seed)
			var steps []ipamStep
			var added []string
			for i := range 60 {
				s := ipamStep{name: []string{"cbr0", "shared"}[rnd.IntN(2)], r: ranges[rnd.IntN(len(ranges))]}
				switch k := rnd.IntN(10); {
				case k < 5 || len(added) == 0:
					s.cmd, s.container = "ADD", fmt.Sprint("c", i)
					added = append(added, s.container)
				case k < 8:
					s.cmd, s.container = "DEL", added[rnd.IntN(len(added))]
				default:
					s.cmd, s.container = "CHECK", added[rnd.IntN(len(added))]
				}
				steps = append(steps, s)
			}
			// A CHECK of a container already deleted fails in both: the
			// outcomes are compared, not required to succeed.
			replay(t, slices.Clip(steps))
		})
	}
}
