package etcd

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftnet/weft/lease"
)

// paddedValue is a lease value that would be admitted but for n bytes of
// padding in a field flannel does not know.
func paddedValue(i, n int) string {
	raw, _ := attrsFor(i).MarshalJSON()
	return strings.Replace(string(raw), "{", `{"Padding":"`+strings.Repeat("x", n)+`",`, 1)
}

// TestWatchLeasesOversize: a value over lease.MaxValueSize reaches the
// watcher as an Invalid lease naming the limit, with nothing of the value,
// in the snapshot and in the watch; written again within the limit, it is
// a Changed lease like any other.
func TestWatchLeasesOversize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	listed, watched := mustKey(t, "10.244.7.0-24"), mustKey(t, "10.244.8.0-24")
	e.put(subnetPath(listed), paddedValue(7, 100<<10))
	w := watchLeases(t, e.manager("watcher"))
	e.put(subnetPath(watched), paddedValue(8, lease.MaxValueSize))
	e.putLease(mustKey(t, "10.244.9.0-24"), 9, "node-9") // after both: the watch has seen them
	w.WaitLeases(t, "the lease written after both", func(m map[lease.Key]lease.Attrs) bool {
		_, ok := m[mustKey(t, "10.244.9.0-24")]
		return ok
	})
	got := w.Batches()
	invalid := map[lease.Key]string{}
	for _, b := range w.Batches() {
		for _, ev := range b.Events {
			if ev.Lease.Invalid != "" {
				invalid[ev.Lease.Key] = ev.Lease.Invalid
				if !ev.Lease.Attrs.Equal(lease.Attrs{}) {
					t.Errorf("%s: invalid lease kept attributes %+v", ev.Lease.Key, ev.Lease.Attrs)
				}
			}
		}
	}
	for k, size := range map[lease.Key]int{listed: 100 << 10, watched: lease.MaxValueSize} {
		if why := invalid[k]; !strings.Contains(why, fmt.Sprint(lease.MaxValueSize)) || !strings.Contains(why, "over the limit") {
			t.Errorf("%s (%d bytes of padding): reported %q, want one naming the limit; events %+v", k, size, why, got)
		}
	}
	e.putLease(watched, 8, "node-8")
	w.WaitLeases(t, "the lease written again within the limit", func(m map[lease.Key]lease.Attrs) bool {
		return m[watched].Owner == "node-8"
	})
}

// TestListPagedOverReceiveLimit: with a client whose receive limit is
// smaller than a page of padded values (as MaxRecvBytes is than a page of
// 1 MB values), the listing asks for fewer keys until a page fits, passes
// a key over the limit alone on by name, and lists every key, the honest
// ones whole; a watcher lists again past a watch response over the limit.
func TestListPagedOverReceiveLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	const padding = 300 << 10
	want := map[string]bool{} // key: padded
	for i := range 12 {
		k := mustKey(t, fmt.Sprintf("10.244.%d.0-24", 10+i))
		if i%3 == 0 {
			e.putLease(k, i, "honest")
			want[subnetPath(k)] = false
		} else {
			e.put(subnetPath(k), paddedValue(i, padding))
			want[subnetPath(k)] = true
		}
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.server.Endpoint()}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), MaxCallRecvMsgSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := e.managerWith("lister", func(o *Options) { o.Client = c })
	pages := 0
	seen := map[string]bool{}
	_, err = m.listPaged(ctxFor(t, 30*time.Second), m.subnetsPrefix(), func(kvs []*mvccpb.KeyValue, _ int64) {
		pages++
		for _, kv := range kvs {
			seen[string(kv.Key)] = true
			padded, ok := want[string(kv.Key)]
			switch err := valueSizeError(kv.Value); {
			case !ok:
				t.Errorf("listed %s, which was not written", kv.Key)
			case padded && (err == nil || len(kv.Value) > 64):
				t.Errorf("%s: padded value passed on as %d bytes (%v)", kv.Key, len(kv.Value), err)
			case !padded && (err != nil || !strings.Contains(string(kv.Value), "VtepMAC")):
				t.Errorf("%s: honest value passed on as %q", kv.Key, kv.Value)
			}
		}
	})
	if err != nil {
		t.Fatalf("after %d pages: %v", pages, err)
	}
	if len(seen) != len(want) || pages < len(want)*2/3 {
		t.Errorf("%d of %d keys in %d pages; want all, about one a page", len(seen), len(want), pages)
	}

	// The watch: a put over the limit ends a watch response the client
	// refuses; the watcher lists again and sees it.
	w := watchLeases(t, m)
	waitFor(t, 15*time.Second, "the snapshot", func() bool { return len(w.Batches()) >= 1 })
	late := mustKey(t, "10.244.99.0-24")
	e.put(subnetPath(late), paddedValue(99, padding))
	e.putLease(mustKey(t, "10.244.98.0-24"), 98, "honest")
	w.WaitLeases(t, "the honest lease written after the padded one", func(l map[lease.Key]lease.Attrs) bool {
		_, ok := l[mustKey(t, "10.244.98.0-24")]
		return ok
	})
	found := false
	for _, b := range w.Batches() {
		for _, ev := range b.Events {
			found = found || ev.Lease.Key == late && ev.Lease.Invalid != ""
		}
	}
	if !strings.Contains(e.logs.String(), "over the client's receive limit; listing again") {
		t.Errorf("the watch response over the limit did not make the watcher list again; logs:\n%s", e.logs)
	}
	if !found {
		t.Errorf("the padded lease written during the watch was not passed on as invalid; logs:\n%s", e.logs)
	}
}

// maxViewBytesPerLease bounds what a watcher's view keeps per lease it
// sent: every usable subnet key, a writer's included. It measured about
// 210 bytes while it kept a copy of each lease (a heap profile: 10.6 MB
// for 50,000), and 78 since it keeps a digest (go1.26; the map's room
// included).
const maxViewBytesPerLease = 100

// TestViewBytesPerLease: the view of 20,000 leases stays within
// maxViewBytesPerLease a lease.
func TestViewBytesPerLease(t *testing.T) {
	const n = 20000
	leases := make([]lease.Lease, n)
	for i := range leases {
		leases[i] = lease.Lease{
			Key:       lease.Key{IPv4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)},
			Seniority: int64(i + 1),
			Attrs:     attrsFor(i),
		}
		leases[i].Attrs.Owner = fmt.Sprint("node-", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := newLeaseView()
	for _, l := range leases {
		v.put(l)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	runtime.KeepAlive(v)
	runtime.KeepAlive(leases)
	t.Logf("%d live bytes per lease", per)
	if v.len() != n {
		t.Fatalf("the view holds %d, want %d", v.len(), n)
	}
	if per > maxViewBytesPerLease {
		t.Errorf("the view keeps %d bytes per lease, more than %d", per, maxViewBytesPerLease)
	}
	// What it keeps still tells a change from a renewal.
	l := leases[7]
	if known, same := v.known(l); !known || !same {
		t.Errorf("a lease as sent: known %v, same %v", known, same)
	}
	l.Attrs.Owner = "another"
	if _, same := v.known(l); same {
		t.Error("a lease with another owner is the same to the view")
	}
}
