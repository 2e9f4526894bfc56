package localstate_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/localstate"
)

var (
	id  = localstate.Identity{Network: "etcd /coreos.com/network", Node: "node-a"}
	now = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
)

func peer(subnet, ip, mac string, seniority int64) lease.Lease {
	return lease.Lease{Key: lease.Key{IPv4: netip.MustParsePrefix(subnet)}, Seniority: seniority, Attrs: lease.Attrs{
		PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan", Owner: "n-" + ip,
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"` + mac + `"}`)}}
}

func sample() localstate.State {
	own := peer("10.244.3.0/24", "192.0.2.3", "0e:00:00:00:00:03", 17)
	own.Attrs.Owner = "node-a"
	own.Expiration = now.Add(24 * time.Hour)
	return localstate.State{
		Identity: id,
		Config:   json.RawMessage(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`),
		Lease:    own, VtepMAC: "0e:00:00:00:00:03",
		Peers:   []lease.Lease{peer("10.244.4.0/24", "192.0.2.4", "0e:00:00:00:00:04", 21), peer("10.244.5.0/24", "192.0.2.5", "0e:00:00:00:00:05", 22)},
		PeersAt: now.Add(-time.Minute), PeersRevision: 4711,
	}
}

// TestRoundTrip: what Write stores, Read returns, field by field; a
// second Write of the same state writes nothing, a changed one writes.
func TestRoundTrip(t *testing.T) {
	path := localstate.Path(t.TempDir(), id)
	s := sample()
	wrote, err := localstate.Write(path, s, now)
	if err != nil || !wrote {
		t.Fatalf("first write: %v, %v", wrote, err)
	}
	got, err := localstate.Read(path, id, time.Hour, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.Identity != id || !got.Written.Equal(now) || got.Lease.Key != s.Lease.Key || !got.Lease.Attrs.Equal(s.Lease.Attrs) ||
		!got.Lease.Expiration.Equal(s.Lease.Expiration) || got.Lease.Seniority != 17 || got.VtepMAC != s.VtepMAC ||
		got.PeersRevision != 4711 || !got.PeersAt.Equal(s.PeersAt) || len(got.Peers) != 2 || string(got.Config) != string(s.Config) {
		t.Fatalf("read back %+v", got)
	}
	for i, p := range got.Peers {
		if p.Key != s.Peers[i].Key || !p.Attrs.Equal(s.Peers[i].Attrs) || p.Seniority != s.Peers[i].Seniority {
			t.Errorf("peer %d: %+v, want %+v", i, p, s.Peers[i])
		}
	}
	info, _ := os.Stat(path)
	if wrote, err := localstate.Write(path, s, now.Add(time.Hour)); err != nil || wrote {
		t.Errorf("an unchanged state was written again: %v, %v", wrote, err)
	}
	if after, _ := os.Stat(path); !after.ModTime().Equal(info.ModTime()) {
		t.Error("the file was touched by an unchanged write")
	}
	s.Peers = s.Peers[:1]
	if wrote, err := localstate.Write(path, s, now.Add(time.Hour)); err != nil || !wrote {
		t.Errorf("a changed state was not written: %v, %v", wrote, err)
	}
	if got, _ := localstate.Read(path, id, 0, now.Add(time.Hour)); len(got.Peers) != 1 || !got.Written.Equal(now.Add(time.Hour)) {
		t.Errorf("after the change: %+v", got)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", info.Mode())
	}
}

// TestReadRefuses: every file the agent must not use is an error naming
// the file and matching its sentinel.
func TestReadRefuses(t *testing.T) {
	dir := t.TempDir()
	good, err := localstate.Encode(func() localstate.State { s := sample(); s.Written = now; return s }())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		id     localstate.Identity
		maxAge time.Duration
		at     time.Time
		want   error
		detail string
	}{
		{"missing", nil, id, 0, now, fs.ErrNotExist, ""},
		{"truncated", good[:len(good)/2], id, 0, now, localstate.ErrCorrupt, ""},
		{"empty", []byte{}, id, 0, now, localstate.ErrCorrupt, ""},
		{"not ours", []byte(`{"Network":"10.244.0.0/16"}`), id, 0, now, localstate.ErrCorrupt, "not a weft state file"},
		{"a newer version", edit(func(m map[string]any) { m["weftLocalState"] = 2 }), id, 0, now, localstate.ErrVersion, "version 2"},
		{"an unknown field", edit(func(m map[string]any) { m["surprise"] = 1 }), id, 0, now, localstate.ErrCorrupt, "surprise"},
		{"a bad config", edit(func(m map[string]any) { m["config"] = map[string]any{"Network": "nope"} }), id, 0, now, localstate.ErrCorrupt, "config"},
		{"no lease", edit(func(m map[string]any) { delete(m, "lease") }), id, 0, now, localstate.ErrCorrupt, "no lease"},
		{"a bad MAC", edit(func(m map[string]any) { m["vtepMAC"] = "zz" }), id, 0, now, localstate.ErrCorrupt, "VTEP MAC"},
		{"a repeated peer", edit(func(m map[string]any) { p := m["peers"].([]any); m["peers"] = append(p, p[0]) }), id, 0, now, localstate.ErrCorrupt, "repeated"},
		{"another network", good, localstate.Identity{Network: "etcd /other", Node: "node-a"}, 0, now, localstate.ErrForeign, `network "etcd /coreos.com/network"`},
		{"another node", good, localstate.Identity{Network: id.Network, Node: "node-b"}, 0, now, localstate.ErrForeign, ""},
		{"an expired lease", good, id, 0, now.Add(25 * time.Hour), localstate.ErrStale, "expired"},
		{"older than allowed", good, id, time.Hour, now.Add(2 * time.Hour), localstate.ErrStale, "at most 1h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".state.json")
			if tc.data != nil {
				if err := os.WriteFile(path, tc.data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := localstate.Read(path, tc.id, tc.maxAge, tc.at)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) && tc.want != fs.ErrNotExist || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("got %v, want %v naming %s and %q", err, tc.want, path, tc.detail)
			}
		})
	}
	// The untouched file is fine, which makes every case above a real
	// refusal.
	path := filepath.Join(dir, "good.state.json")
	os.WriteFile(path, good, 0o600)
	if _, err := localstate.Read(path, id, time.Hour, now.Add(time.Minute)); err != nil {
		t.Errorf("the good file: %v", err)
	}
}

func TestPath(t *testing.T) {
	for _, tc := range []struct{ network, want string }{
		{"etcd /coreos.com/network", "etcd__coreos.com_network.state.json"},
		{"/coreos.com/network", "coreos.com_network.state.json"},
		{"../../etc/passwd", ".._.._etc_passwd.state.json"},
		{"", "_.state.json"},
		{"..", "_...state.json"},
	} {
		if got := filepath.Base(localstate.Path("/var/lib/weft", localstate.Identity{Network: tc.network})); got != tc.want {
			t.Errorf("Path(%q) = %q, want %q", tc.network, got, tc.want)
		}
		if dir := filepath.Dir(localstate.Path("/var/lib/weft", localstate.Identity{Network: tc.network})); dir != "/var/lib/weft" {
			t.Errorf("Path(%q) leaves the directory: %s", tc.network, dir)
		}
	}
}
