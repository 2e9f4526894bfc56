package admit

import (
	"net/netip"
	"testing"

	"github.com/weftnet/weft/lease"
)

// FuzzAdmit feeds leases as a lease source would decode them from untrusted
// keys and values, in an order and with seniorities the input picks, to an
// incremental Table. It must never panic, and after every step it must
// agree with the reference and with a Table built from scratch, with no two
// admitted peers in conflict.
func FuzzAdmit(f *testing.F) {
	f.Add("10.244.3.0-24", `{"PublicIP":"172.30.0.3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:03"}}`,
		"10.244.3.0-24&fd00:1::-64", `{"PublicIP":"172.30.0.9","PublicIPv6":"fd30::9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:03"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:00:09"}}`,
		"128.0.0.0-1", `{"PublicIP":"224.0.0.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"ff:ff:ff:ff:ff:ff"}}`,
		[]byte{3, 1, 2, 0x81, 0x42, 0x10})
	f.Add("10.244.1.128-25", `{"PublicIP":"172.30.0.4","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:04"},"WeftOwner":"me"}`,
		"10.244.4.0-24", `{"PublicIP":"172.30.0.4","BackendType":"vxlan","BackendData":{"VNI":2,"VtepMAC":"0e:00:00:00:00:04"},"WeftOwner":"x"}`,
		"0.0.0.0-0&fd00:1:0:4::-64", `{"PublicIPv6":"fd30::4","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0e:00:00:00:00:04"}}`,
		[]byte{0, 0, 0, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string, ops []byte) {
		var pool []lease.Lease
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			k, err := lease.ParseKey(kv[0])
			if err != nil {
				continue
			}
			l := lease.Lease{Key: k}
			if l.Attrs.UnmarshalJSON([]byte(kv[1])) != nil {
				continue
			}
			pool = append(pool, l)
		}
		if len(pool) == 0 {
			return
		}
		facts := baseFacts
		facts.IPv6Network = netip.MustParsePrefix("fd00::/16")
		tab := NewTable(facts)
		leases := map[lease.Key]lease.Lease{}
		mirror := map[string]Peer{}
		for i, op := range ops {
			if i >= 32 {
				break
			}
			l := pool[int(op&3)%len(pool)]
			l.Seniority = int64(op >> 4)
			var e lease.Event
			switch {
			case op&8 != 0:
				if _, ok := leases[l.Key]; !ok {
					continue
				}
				delete(leases, l.Key)
				e = lease.Event{Type: lease.Removed, Lease: l}
			default:
				leases[l.Key] = l
				e = lease.Event{Type: lease.Added, Lease: l}
			}
			if op&4 != 0 {
				var evs []lease.Event
				for _, l := range leases {
					evs = append(evs, lease.Event{Type: lease.Added, Lease: l})
				}
				applyDelta(mirror, tab.Apply(lease.Batch{Snapshot: true, Events: evs}))
			} else {
				applyDelta(mirror, tab.Apply(lease.Batch{Events: []lease.Event{e}}))
			}
			check(t, tab, leases, mirror)
		}
	})
}
