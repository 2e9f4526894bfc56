// Package localstate keeps, on the node's own disk, what an agent needs to
// bring its overlay up while the control plane cannot be reached: the
// network config in force, this node's lease, its VTEP MACs, and the last
// admitted peer set with when it was true. An edge node that reboots cut
// off from etcd or the API server programs its datapath from it, so that
// its pods reach the neighbouring nodes' pods before the cluster answers.
//
// # Format
//
// One JSON file per network, named by Path. Its first field is the format
// version:
//
//	{"weftLocalState": 1,
//	 "network": "etcd /coreos.com/network", "node": "node-a",
//	 "written": "2026-12-02T10:00:00Z",
//	 "config": {"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}},
//	 "lease": {"key": "10.244.3.0-24", "attrs": {...flannel's lease value...},
//	           "expiration": "2026-12-03T10:00:00Z", "seniority": 17},
//	 "vtepMAC": "0e:...", "vtepMACv6": "",
//	 "peersAt": "2026-12-02T10:00:00Z", "peersRevision": 4711,
//	 "peers": [{"key": "10.244.4.0-24", "attrs": {...}, "seniority": 21}, ...]}
//
// A lease's attrs are flannel's value for its key, as lease.Attrs encodes
// it, so a state file reads like the store it mirrors. A version this
// package does not know is refused, never guessed at.
//
// # Guarantees
//
// Write replaces the file atomically, with subnet.env's crash-safety rules
// (a temporary file, fsync, rename, directory fsync), and only when its
// content changed: a resync that changes nothing writes nothing. Read
// never returns a State it cannot vouch for: a file that does not parse,
// of another version, of another network or node, whose lease has expired
// or that is older than the caller allows, is an error naming the file
// and what is wrong, matching one of the sentinels below; the caller then
// goes on as if there were none. Nothing here panics on any input
// (FuzzDecode).
//
// A Store is the usual way in: one network's file for one node, which
// remembers what it last wrote so that an unchanged Save costs no I/O. It
// is what agent.NetworkConfig.LocalState takes.
//
// The functions are safe for concurrent use on different paths; writers of
// one path must be serialised by the caller (one agent per network).
package localstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/lease"
)

// FormatVersion is the version Write writes and Read accepts.
const FormatVersion = 1

// DefaultDir is where flanneld keeps its state: under /var/lib, which
// survives reboots, unlike /run where subnet.env lives.
const DefaultDir = "/var/lib/weft"

// Errors Read returns, wrapped with the file's path and the detail.
var (
	// ErrCorrupt: the file does not parse, or holds values that are not
	// valid (a malformed key, attributes that fail lease.Attrs.Validate).
	ErrCorrupt = errors.New("corrupt state file")
	// ErrVersion: the file is of a format version this package does not
	// know.
	ErrVersion = errors.New("state file of an unknown format version")
	// ErrForeign: the file is another network's or another node's.
	ErrForeign = errors.New("state file of another network or node")
	// ErrStale: the cached lease has expired, or the file is older than
	// the caller's maximum age.
	ErrStale = errors.New("state file too old to use")
)

// An Identity says whose a State is: a State is used only by the same
// network (for lease/etcd, the etcd prefix; in kube mode, "kube" and the
// annotation prefix, say) and node.
type Identity struct {
	Network string
	Node    string
}

// A State is what an agent caches.
type State struct {
	Identity
	// Written is when the State was written; Write sets it.
	Written time.Time
	// Config is the network config in force, net-conf.json's bytes.
	Config json.RawMessage
	// Lease is this node's lease; its Expiration is zero where the source
	// does not say (kube mode).
	Lease lease.Lease
	// VtepMAC and VtepMACv6 are the devices' MACs, "" for a family the
	// node does not run.
	VtepMAC, VtepMACv6 string
	// Peers is the last admitted peer set; PeersAt and PeersRevision say
	// when it was true (PeersRevision is the store's revision, etcd's; 0
	// where there is none).
	Peers         []lease.Lease
	PeersAt       time.Time
	PeersRevision int64
}

// file is the on-disk form: the header, then the peers, last so that
// EncodeTo can stream them.
type file struct {
	fileHead
	Peers []fileLease `json:"peers"`
}

// fileHead is the file without its peers.
type fileHead struct {
	Version       *int            `json:"weftLocalState"`
	Network       string          `json:"network"`
	Node          string          `json:"node"`
	Written       time.Time       `json:"written"`
	Config        json.RawMessage `json:"config"`
	Lease         fileLease       `json:"lease"`
	VtepMAC       string          `json:"vtepMAC,omitempty"`
	VtepMACv6     string          `json:"vtepMACv6,omitempty"`
	PeersAt       time.Time       `json:"peersAt"`
	PeersRevision int64           `json:"peersRevision,omitempty"`
}

type fileLease struct {
	Key        lease.Key   `json:"key"`
	Attrs      lease.Attrs `json:"attrs"`
	Expiration time.Time   `json:"expiration,omitzero"`
	Seniority  int64       `json:"seniority,omitempty"`
}

func toFile(l lease.Lease) fileLease {
	return fileLease{Key: l.Key, Attrs: l.Attrs, Expiration: l.Expiration, Seniority: l.Seniority}
}

func (f fileLease) lease() lease.Lease {
	return lease.Lease{Key: f.Key, Attrs: f.Attrs, Expiration: f.Expiration, Seniority: f.Seniority}
}

// Path returns the state file of network id.Network in dir. The name is
// the network with every character but letters, digits, '-' and '.'
// replaced, so that any network string makes one safe file name.
func Path(dir string, id Identity) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, strings.TrimLeft(id.Network, "/"))
	if name == "" || name == "." || name == ".." {
		name = "_" + name
	}
	return filepath.Join(dir, name+".state.json")
}

// Decode parses the on-disk form. Its errors match ErrCorrupt or
// ErrVersion.
func Decode(data []byte) (State, error) {
	var probe struct {
		Version *int `json:"weftLocalState"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch {
	case probe.Version == nil:
		return State{}, fmt.Errorf("%w: no weftLocalState version field: not a weft state file", ErrCorrupt)
	case *probe.Version != FormatVersion:
		return State{}, fmt.Errorf("%w: version %d, this agent reads %d", ErrVersion, *probe.Version, FormatVersion)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return State{}, fmt.Errorf("%w: data after the state object", ErrCorrupt)
	}
	s := State{
		Identity: Identity{Network: f.Network, Node: f.Node}, Written: f.Written, Config: f.Config,
		Lease: f.Lease.lease(), VtepMAC: f.VtepMAC, VtepMACv6: f.VtepMACv6,
		PeersAt: f.PeersAt, PeersRevision: f.PeersRevision,
	}
	if s.Network == "" || s.Node == "" {
		return State{}, fmt.Errorf("%w: no network or node", ErrCorrupt)
	}
	if _, err := lease.ParseConfig(f.Config); err != nil {
		return State{}, fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	if !s.Lease.Key.IsValid() {
		return State{}, fmt.Errorf("%w: no lease", ErrCorrupt)
	}
	if err := s.Lease.Attrs.Validate(); err != nil {
		return State{}, fmt.Errorf("%w: lease %s: %v", ErrCorrupt, s.Lease.Key, err)
	}
	for _, m := range []string{s.VtepMAC, s.VtepMACv6} {
		if m == "" {
			continue
		}
		if _, err := parseMAC(m); err != nil {
			return State{}, fmt.Errorf("%w: VTEP MAC %q: %v", ErrCorrupt, m, err)
		}
	}
	seen := make(map[lease.Key]bool, len(f.Peers))
	for _, p := range f.Peers {
		if !p.Key.IsValid() || seen[p.Key] {
			return State{}, fmt.Errorf("%w: peer key %q missing or repeated", ErrCorrupt, p.Key)
		}
		seen[p.Key] = true
		// A peer's attributes are judged again by admission when the
		// state is used; only what cannot be a lease at all is refused.
		s.Peers = append(s.Peers, p.lease())
	}
	return s, nil
}

// Read reads the state file at path for id. now and maxAge bound its
// age: a file written more than maxAge before now (0: any age), or whose
// lease expired before now, is ErrStale. Every error names path. A file
// that does not exist is an error matching fs.ErrNotExist.
func Read(path string, id Identity, maxAge time.Duration, now time.Time) (State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return State{}, fmt.Errorf("localstate: %w", err)
	}
	s, err := Decode(data)
	if err != nil {
		return State{}, fmt.Errorf("localstate: %s: %w", path, err)
	}
	switch {
	case s.Identity != id:
		return State{}, fmt.Errorf("localstate: %s: %w: it is network %q node %q, this agent is network %q node %q",
			path, ErrForeign, s.Network, s.Node, id.Network, id.Node)
	case !s.Lease.Expiration.IsZero() && !now.Before(s.Lease.Expiration):
		return State{}, fmt.Errorf("localstate: %s: %w: the cached lease %s expired at %s", path, ErrStale, s.Lease.Key, s.Lease.Expiration.Format(time.RFC3339))
	case maxAge > 0 && now.Sub(s.Written) > maxAge:
		return State{}, fmt.Errorf("localstate: %s: %w: written %s ago, at most %s allowed", path, ErrStale, now.Sub(s.Written).Round(time.Second), maxAge)
	}
	return s, nil
}

// Write stores s at path, creating its directory, unless the file already
// holds the same state (Written aside). It reports whether it wrote. s's
// Written is set to now.
func Write(path string, s State, now time.Time) (bool, error) {
	if old, err := os.ReadFile(path); err == nil {
		if prev, err := Decode(old); err == nil {
			a, erra := digestOf(prev)
			b, errb := digestOf(s)
			if erra == nil && errb == nil && a == b {
				return false, nil
			}
		}
	}
	s.Written = now
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("localstate: %w", err)
	}
	if err := atomicfile.WriteStream(path, 0o600, func(w io.Writer) error { return EncodeTo(w, s) }); err != nil {
		return false, fmt.Errorf("localstate: write %s: %w", path, err)
	}
	return true, nil
}

// RemoveStale removes temporary files a killed Write of path left.
func RemoveStale(path string) ([]string, error) { return atomicfile.RemoveStale(path) }

// parseMAC accepts a 6-byte Ethernet address.
func parseMAC(s string) (net.HardwareAddr, error) {
	m, err := net.ParseMAC(s)
	if err == nil && len(m) != 6 {
		err = errors.New("not a 6-byte Ethernet address")
	}
	return m, err
}
