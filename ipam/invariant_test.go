package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNoTwoLiveAttachmentsHoldOneIP checks the store's invariant (see the
// package doc) after every step of random histories, through the
// Allocator and against the files on disk: pods' sandboxes added, retried,
// re-created with and without a DEL of the last (so that several sandboxes
// of one pod are live at once), DELs that never come (until a GC or a late
// DEL), GCs, anonymous containers, the clock moving past hints' TTL, and
// range changes, in a range small enough that hints give way. The plugin's
// TestNoIPHeldTwice drives the same through the binary with host-local on
// the store; this one runs many more steps.
func TestNoTwoLiveAttachmentsHoldOneIP(t *testing.T) {
	ranges := [][]Range{
		{{Subnet: netip.MustParsePrefix("10.1.0.0/28")}},
		{{Subnet: netip.MustParsePrefix("10.1.0.0/28"), Start: netip.MustParseAddr("10.1.0.6")}},
		{{Subnet: netip.MustParsePrefix("10.1.0.0/28"), End: netip.MustParseAddr("10.1.0.9")}, {Subnet: netip.MustParsePrefix("fd00:1::/124")}},
	}
	for run := range 3 {
		seed := rand.Uint64()
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			t.Logf("seed %d", seed)
			rnd := rand.New(rand.NewPCG(seed, 0))
			c := &clock{time.Unix(1e9, 0)}
			dir := t.TempDir() + "/cbr0"
			open := func(rs []Range) *Allocator {
				a, err := New(Config{Dir: dir, Ranges: rs, HintTTL: time.Hour, Now: c.now})
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			a := open(ranges[0])
			type sandbox struct {
				at  Attachment
				pod Pod
				ips []netip.Addr
			}
			var live, dead []*sandbox
			pods := []string{"web-0", "web-1", "db-0", "q-0", ""}
			var log []string
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("%s\nhistory:\n%s", fmt.Sprintf(format, args...), strings.Join(log, "\n"))
			}
			add := func(sb *sandbox) {
				ips, err := a.Allocate(sb.at, sb.pod)
				if errors.Is(err, ErrExhausted) {
					log[len(log)-1] += ": full"
					a.Release(sb.at, sb.pod) // the runtime's DEL after a failed ADD
					if i := slices.Index(live, sb); i >= 0 {
						live = slices.Delete(live, i, i+1)
					}
					return
				}
				if err != nil {
					fail("%v", err)
				}
				var got []netip.Addr
				for _, ip := range ips {
					got = append(got, ip.Address.Addr())
				}
				log[len(log)-1] += fmt.Sprint(": ", got)
				if len(sb.ips) == 0 {
					live = append(live, sb)
				}
				for _, ip := range got {
					if !slices.Contains(sb.ips, ip) {
						sb.ips = append(sb.ips, ip)
					}
				}
			}
			pick := func(s []*sandbox) int {
				if len(s) == 0 {
					return -1
				}
				return rnd.IntN(len(s))
			}
			for step := range 400 {
				switch k := rnd.IntN(100); {
				case k < 35:
					name := pods[rnd.IntN(len(pods))]
					p := Pod{}
					if name != "" {
						p = Pod{Namespace: "default", Name: name, UID: "uid-" + name}
					}
					sb := &sandbox{at: att(fmt.Sprint("s", step)), pod: p}
					log = append(log, fmt.Sprintf("%d ADD %s (%s)", step, sb.at.ContainerID, p))
					add(sb)
				case k < 45:
					if i := pick(live); i >= 0 {
						log = append(log, fmt.Sprintf("%d re-ADD %s", step, live[i].at.ContainerID))
						add(live[i])
					}
				case k < 60:
					if i := pick(live); i >= 0 {
						log = append(log, fmt.Sprintf("%d DEL %s", step, live[i].at.ContainerID))
						p := live[i].pod
						if rnd.IntN(3) == 0 {
							p = Pod{} // a DEL without CNI_ARGS
						}
						if err := a.Release(live[i].at, p); err != nil {
							fail("%v", err)
						}
						live = slices.Delete(live, i, i+1)
					}
				case k < 70:
					if i := pick(live); i >= 0 {
						log = append(log, fmt.Sprintf("%d crash %s", step, live[i].at.ContainerID))
						dead = append(dead, live[i])
						live = slices.Delete(live, i, i+1)
					}
				case k < 75:
					if i := pick(dead); i >= 0 {
						log = append(log, fmt.Sprintf("%d late DEL %s", step, dead[i].at.ContainerID))
						if err := a.Release(dead[i].at, dead[i].pod); err != nil {
							fail("%v", err)
						}
						dead = slices.Delete(dead, i, i+1)
					}
				case k < 80:
					var valid []Attachment
					for _, sb := range live {
						valid = append(valid, sb.at)
					}
					log = append(log, fmt.Sprintf("%d GC", step))
					if _, err := a.GC(valid); err != nil {
						fail("%v", err)
					}
					dead = nil
				case k < 90:
					d := time.Duration(rnd.IntN(90)) * time.Minute
					log = append(log, fmt.Sprintf("%d clock +%v", step, d))
					c.advance(d)
				default:
					i := rnd.IntN(len(ranges))
					log = append(log, fmt.Sprintf("%d ranges %d", step, i))
					a = open(ranges[i])
				}
				// The invariant, on disk: each live attachment's IPs are
				// reserved to it, so no IP is held by two.
				reserved, err := a.s.reservations()
				if err != nil {
					fail("%v", err)
				}
				owner := map[netip.Addr]Attachment{}
				for _, sb := range live {
					for _, ip := range sb.ips {
						if o, dup := owner[ip]; dup {
							fail("%s and %s, both live, were given %s", o.ContainerID, sb.at.ContainerID, ip)
						}
						owner[ip] = sb.at
						if reserved[ip] != sb.at {
							fail("%s is live and was given %s, reserved to %+v", sb.at.ContainerID, ip, reserved[ip])
						}
					}
				}
			}
		})
	}
}
