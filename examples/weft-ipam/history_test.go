package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The invariant of issue 29's second item: no two live attachments hold
// one IP. An attachment (a container ID and an interface) is live from its
// ADD until its DEL, or until a GC leaves it out, whether or not its
// sandbox still runs: the runtime may not have torn it down. So an ADD
// must never hand out an IP whose reservation names another attachment.
//
// TestNoIPHeldTwice drives random histories through weft-ipam and Debian's
// host-local on one store, as a node switching between them has: pods'
// sandboxes added, re-added (the runtime's retry), re-created under the
// pod's name with and without a DEL of the last, DELs that never come
// (crashed, until a GC or a late DEL), GCs, host-local's own containers,
// and range changes. After every step it checks, against the files on
// disk, that each live attachment's IP is reserved to it: so no IP is
// held by two.

// historyRanges are the ranges a history switches between, all in
// 10.244.3.0/28 (.1 the gateway): the whole, a later start, an earlier end.
var historyRanges = []string{
	`{"subnet": "10.244.3.0/28"}`,
	`{"subnet": "10.244.3.0/28", "rangeStart": "10.244.3.5"}`,
	`{"subnet": "10.244.3.0/28", "rangeEnd": "10.244.3.10"}`,
}

type historyStore struct {
	t       *testing.T
	dataDir string
	ranges  string // the current "ranges" entry
}

func (h *historyStore) conf(plugin, extra string) string {
	v := "1.1.0" // GC's
	if plugin == "host-local" {
		v = "1.0.0" // Debian's is 1.1.x's plugins, before GC
	}
	return fmt.Sprintf(`{"cniVersion": %q, "name": "cbr0"%s, "ipam": {"type": %q, "dataDir": %q, "ranges": [[%s]]}}`, v, extra, plugin, h.dataDir, h.ranges)
}

// call runs plugin (weft-ipam or host-local) and returns its output.
func (h *historyStore) call(plugin, command, container, args, extra string) (string, error) {
	path := bin
	if plugin == "host-local" {
		path = hostLocal
	}
	cmd := exec.Command(path)
	cmd.Env = []string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + container, "CNI_NETNS=/var/run/netns/" + container,
		"CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin", "CNI_ARGS=" + args}
	cmd.Stdin = strings.NewReader(h.conf(plugin, extra))
	out, err := cmd.Output()
	return string(out), err
}

// A sandbox is one attachment and the pod it is of ("" for host-local's
// containers).
type sandbox struct {
	container, pod, plugin string
	ips                    []string // what its ADDs returned
}

func TestNoIPHeldTwice(t *testing.T) {
	requireHostLocal(t)
	for run := range 4 {
		seed := rand.Uint64()
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			t.Logf("seed %d", seed)
			history(t, rand.New(rand.NewPCG(seed, 0)), 250)
		})
	}
}

func history(t *testing.T, rnd *rand.Rand, steps int) {
	h := &historyStore{t: t, dataDir: filepath.Join(t.TempDir(), "data"), ranges: historyRanges[0]}
	if err := os.MkdirAll(filepath.Join(h.dataDir, "cbr0"), 0o755); err != nil {
		t.Fatal(err)
	}
	var live, dead []*sandbox // dead: gone without a DEL, reserved until a GC or a late DEL
	pods := []string{"web-0", "web-1", "db-0", "db-1", "q-0"}
	var log []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after %s:\n%s\nhistory:\n%s", log[len(log)-1], fmt.Sprintf(format, args...), strings.Join(log, "\n"))
	}
	pick := func(s []*sandbox, plugin string) (int, *sandbox) {
		var idx []int
		for i, x := range s {
			if plugin == "" || x.plugin == plugin {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return -1, nil
		}
		i := idx[rnd.IntN(len(idx))]
		return i, s[i]
	}
	add := func(sb *sandbox) {
		args := ""
		if sb.pod != "" {
			args = podArgs(sb.pod)
		}
		out, err := h.call(sb.plugin, "ADD", sb.container, args, "")
		if err != nil {
			if strings.Contains(out, "no IP addresses available") {
				// Full: the runtime DELs what it tried to add.
				if out, err := h.call(sb.plugin, "DEL", sb.container, args, ""); err != nil {
					fail("DEL %s: %v\n%s", sb.container, err, out)
				}
				log[len(log)-1] += ": full"
				if i := slices.Index(live, sb); i >= 0 {
					live = slices.Delete(live, i, i+1)
				}
				return
			}
			fail("ADD %s: %v\n%s", sb.container, err, out)
		}
		var res struct{ IPs []struct{ Address string } }
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 {
			fail("ADD %s: %v\n%s", sb.container, err, out)
		}
		ip, _, _ := strings.Cut(res.IPs[0].Address, "/")
		log[len(log)-1] += ": " + ip
		switch {
		case len(sb.ips) == 0:
			live = append(live, sb)
		case slices.Contains(sb.ips, ip):
			return
		case h.ranges == historyRanges[0]:
			// Every IP is in this range: a repeated ADD finds its own.
			fail("repeated ADD of %s: %s, it holds %v", sb.container, ip, sb.ips)
		}
		// The first ADD, or a repeated one whose IP is outside the
		// current range: host-local too gives it another (and refuses
		// one in the range).
		sb.ips = append(sb.ips, ip)
	}
	for step := range steps {
		var c string
		switch k := rnd.IntN(100); {
		case k < 35: // a new sandbox of a pod, whatever its others do
			p := pods[rnd.IntN(len(pods))]
			sb := &sandbox{container: fmt.Sprintf("s%d", step), pod: p, plugin: "weft-ipam"}
			log = append(log, fmt.Sprintf("%d ADD %s (%s)", step, sb.container, p))
			add(sb)
		case k < 45: // the runtime's retry of an ADD (host-local refuses one)
			if _, sb := pick(live, "weft-ipam"); sb != nil {
				log = append(log, fmt.Sprintf("%d re-ADD %s (%s, %s)", step, sb.container, sb.pod, sb.plugin))
				add(sb)
			}
		case k < 60: // DEL
			i, sb := pick(live, "")
			if sb == nil {
				continue
			}
			// Either plugin's DEL frees either's container.
			plugin := []string{"weft-ipam", "host-local"}[rnd.IntN(4)/3]
			c = fmt.Sprintf("%d DEL %s by %s", step, sb.container, plugin)
			args := ""
			if sb.pod != "" && plugin == "weft-ipam" {
				args = podArgs(sb.pod)
			}
			if out, err := h.call(plugin, "DEL", sb.container, args, ""); err != nil {
				log = append(log, c)
				fail("DEL: %v\n%s", err, out)
			}
			live = slices.Delete(live, i, i+1)
		case k < 70: // a sandbox gone without its DEL
			i, sb := pick(live, "")
			if sb == nil {
				continue
			}
			c = fmt.Sprintf("%d crash %s (no DEL)", step, sb.container)
			live = slices.Delete(live, i, i+1)
			dead = append(dead, sb)
		case k < 76: // its DEL comes late
			i, sb := pick(dead, "")
			if sb == nil {
				continue
			}
			c = fmt.Sprintf("%d late DEL %s", step, sb.container)
			if out, err := h.call("weft-ipam", "DEL", sb.container, podArgs(sb.pod), ""); err != nil {
				log = append(log, c)
				fail("DEL: %v\n%s", err, out)
			}
			dead = slices.Delete(dead, i, i+1)
		case k < 81: // GC: the runtime names its live attachments
			var valid []string
			for _, sb := range live {
				valid = append(valid, fmt.Sprintf(`{"containerID": %q, "ifname": "eth0"}`, sb.container))
			}
			c = fmt.Sprintf("%d GC", step)
			if out, err := h.call("weft-ipam", "GC", "", "", `, "cni.dev/valid-attachments": [`+strings.Join(valid, ", ")+`]`); err != nil {
				log = append(log, c)
				fail("GC: %v\n%s", err, out)
			}
			dead = nil
		case k < 93: // host-local's own container
			sb := &sandbox{container: fmt.Sprintf("h%d", step), plugin: "host-local"}
			log = append(log, fmt.Sprintf("%d host-local ADD %s", step, sb.container))
			add(sb)
		default: // the node's config changes
			h.ranges = historyRanges[rnd.IntN(len(historyRanges))]
			c = fmt.Sprintf("%d ranges %s", step, h.ranges)
		}
		if c != "" {
			log = append(log, c)
		}
		if len(log) > 0 {
			check(h, live, fail)
		}
	}
}

// check: no two live attachments were given one IP, and each live
// attachment's IP is reserved to it on disk.
func check(h *historyStore, live []*sandbox, fail func(string, ...any)) {
	n := &network{t: h.t, dataDir: h.dataDir}
	r := n.reservations()
	byIP := map[string]string{}
	for _, sb := range live {
		for _, ip := range sb.ips {
			if other, dup := byIP[ip]; dup {
				fail("%s and %s, both live, hold %s", other, sb.container, ip)
			}
			byIP[ip] = sb.container
			if got := r[ip]; got != sb.container+"\r\neth0" {
				fail("%s is live and was given %s, whose reservation names %q", sb.container, ip, got)
			}
		}
	}
}
