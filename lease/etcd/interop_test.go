package etcd

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/lease"
)

// loadDump writes a flannel etcd dump (key -> value) into the server.
func (e *env) loadDump(file string) map[string]string {
	e.t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		e.t.Fatal(err)
	}
	var dump map[string]string
	if err := json.Unmarshal(raw, &dump); err != nil {
		e.t.Fatal(err)
	}
	for k, v := range dump {
		e.put(k, v)
	}
	return dump
}

// TestReadsFlannelKeys loads keys and values exactly as flanneld writes
// them (dual-stack, IPv4-only and IPv6-only keys) and checks what a weft
// watcher and allocator make of them.
func TestReadsFlannelKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.loadDump("testdata/flannel/etcd-dump.json")

	c := watchLeases(t, e.manager("watcher"))
	waitFor(t, 10*time.Second, "the snapshot", func() bool { return len(c.Batches()) >= 1 })
	got := map[string]lease.Attrs{}
	for _, ev := range c.Batches()[0].Events {
		got[ev.Lease.Key.String()] = ev.Lease.Attrs
	}
	want := map[string]struct {
		v4, v6 string
		mac    string
	}{
		"10.244.1.0-24&fd00:10:244:1::-64": {"192.168.56.11", "fd00:56::11", "5a:9d:8e:3f:21:c4"},
		"10.244.2.0-24&fd00:10:244:2::-64": {"192.168.56.12", "fd00:56::12", "7e:10:3a:c2:9b:01"},
		"10.244.3.0-24":                    {"192.168.56.13", "", "0a:58:0a:f4:03:01"},
		"0.0.0.0-0&fd00:10:244:4::-64":     {"", "fd00:56::14", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("snapshot has %d leases %v, want %d", len(got), got, len(want))
	}
	for key, w := range want {
		a, ok := got[key]
		if !ok {
			t.Errorf("lease %s missing", key)
			continue
		}
		if a.PublicIP.IsValid() != (w.v4 != "") || w.v4 != "" && a.PublicIP != netip.MustParseAddr(w.v4) ||
			a.PublicIPv6.IsValid() != (w.v6 != "") || w.v6 != "" && a.PublicIPv6 != netip.MustParseAddr(w.v6) ||
			a.BackendType != "vxlan" || a.Owner != "" || w.mac != "" && !strings.Contains(string(a.BackendData), w.mac) {
			t.Errorf("lease %s read as %+v, want %+v", key, a, w)
		}
	}

	// A weft node with the public IP of a flannel node takes over its
	// lease; a new weft node gets a subnet none of them holds.
	adopt := attrsFor(0)
	adopt.PublicIP = netip.MustParseAddr("192.168.56.12")
	l, err := e.manager("host-12").Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: adopt})
	if err != nil || l.Key.String() != "10.244.2.0-24&fd00:10:244:2::-64" {
		t.Fatalf("weft node with flannel's public IP got %v, %v", l.Key, err)
	}
	fresh := mustAcquire(t, e.manager("host-new"), 50)
	for key := range want {
		k := mustKey(t, key)
		if k.IPv4.IsValid() && k.IPv4.Overlaps(fresh.Key.IPv4) || k.IPv6.IsValid() && k.IPv6.Overlaps(fresh.Key.IPv6) {
			t.Errorf("new node got %v, overlapping flannel's %v", fresh.Key, key)
		}
	}
	if !fresh.Key.IPv4.IsValid() || !fresh.Key.IPv6.IsValid() {
		t.Errorf("dual-stack network gave a single-stack key %v", fresh.Key)
	}
}

// flannelLeaseAttrs mirrors flannel's LeaseAttrs, with its JSON field
// names and types: what flanneld decodes a weft-written value into.
type flannelLeaseAttrs struct {
	PublicIP      string
	PublicIPv6    *string
	BackendType   string          `json:",omitempty"`
	BackendData   json.RawMessage `json:",omitempty"`
	BackendV6Data json.RawMessage `json:",omitempty"`
}

// TestWritesFlannelShape checks that the value weft stores decodes as
// flannel's LeaseAttrs, with nothing but WeftOwner added, in flannel's
// field order.
func TestWritesFlannelShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	l := mustAcquire(t, e.manager("node-a"), 7)
	value := e.get(subnetPath(l.Key)).Value
	var fl flannelLeaseAttrs
	if err := json.Unmarshal([]byte(value), &fl); err != nil {
		t.Fatal(err)
	}
	if fl.PublicIP != "198.18.0.7" || fl.PublicIPv6 != nil || fl.BackendType != "vxlan" ||
		string(fl.BackendData) != `{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"}` || fl.BackendV6Data != nil {
		t.Errorf("flannel reads %+v from %s", fl, value)
	}
	want := `{"PublicIP":"198.18.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"},"WeftOwner":"node-a"}`
	if value != want {
		t.Errorf("stored value\n %s\nwant\n %s", value, want)
	}
	// Only WeftOwner is unknown to flannel.
	dec := json.NewDecoder(bytes.NewReader([]byte(strings.Replace(value, `,"WeftOwner":"node-a"`, "", 1))))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fl); err != nil {
		t.Errorf("value has fields flannel does not know besides WeftOwner: %v", err)
	}
	if !strings.HasPrefix(l.Key.String(), "10.244.") || e.get(testPrefix+"/subnets/"+l.Key.String()) == nil {
		t.Errorf("key %q is not in flannel's layout", testPrefix+"/subnets/"+l.Key.String())
	}
}
