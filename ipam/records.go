package ipam

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
)

// A Pod identifies a pod across its sandboxes, from the CNI_ARGS a
// container runtime passes: K8S_POD_NAMESPACE, K8S_POD_NAME and
// K8S_POD_UID. The namespace and name are what stay the same when a pod
// is restarted (or re-created by a StatefulSet); the UID is kept for
// reference.
type Pod struct {
	Namespace, Name, UID string
}

// IsValid reports whether p names a pod.
func (p Pod) IsValid() bool { return p.Namespace != "" && p.Name != "" }

func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// A Record is what the store remembers of a pod: the IPs it had, so that
// its next sandbox gets them back, and its last attachment.
type Record struct {
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	UID       string       `json:"uid,omitempty"`
	IPs       []netip.Addr `json:"ips"`
	// ContainerID and IfName are the pod's last attachment.
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifname"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	// Released is when the last attachment was released; the zero time
	// while it holds its IPs. A hint expires a TTL after it.
	Released time.Time `json:"released,omitzero"`
}

func (r *Record) pod() Pod { return Pod{Namespace: r.Namespace, Name: r.Name, UID: r.UID} }

// since returns when the record became a hint: when its pod released its
// IPs, or, for a pod still holding them, when it last took them.
func (r *Record) since() time.Time {
	if !r.Released.IsZero() {
		return r.Released
	}
	return r.Updated
}

// expired reports whether the record's IPs stopped being a hint: its pod
// released them ttl or longer ago.
func (r *Record) expired(now time.Time, ttl time.Duration) bool {
	return !r.Released.IsZero() && now.Sub(r.Released) >= ttl
}

// recordPath returns the file of p's record. Names are hashed rather than
// joined: a namespace and a name may each be 253 bytes, and a file name at
// most 255, and no separator is safe in both.
func (s *store) recordPath(p Pod) string {
	sum := sha256.Sum256([]byte(p.Namespace + "\x00" + p.Name))
	return filepath.Join(s.dir, recordDir, hex.EncodeToString(sum[:]))
}

// record reads p's record, or returns nil if there is none.
func (s *store) record(p Pod) (*Record, error) {
	data, err := os.ReadFile(s.recordPath(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: pod record of %s: %w", p, err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil || r.Namespace != p.Namespace || r.Name != p.Name {
		// A crash cannot tear a record (it is replaced atomically), so
		// this is damage from outside: forget it rather than fail.
		return nil, nil
	}
	return &r, nil
}

// records reads every pod record. Unreadable ones are skipped, and stale
// temporary files of interrupted writes removed.
func (s *store) records() ([]*Record, error) {
	dir := filepath.Join(s.dir, recordDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	out := make([]*Record, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var r Record
		if json.Unmarshal(data, &r) == nil && r.Name != "" {
			out = append(out, &r)
		}
	}
	return out, nil
}

// putRecord writes r atomically (temporary file, fsync, rename, directory
// fsync).
func (s *store) putRecord(r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.recordPath(r.pod()), data, 0o644); err != nil {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return nil
}

// deleteRecord removes p's record.
func (s *store) deleteRecord(p Pod) error {
	if err := os.Remove(s.recordPath(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipam: pod record of %s: %w", p, err)
	}
	return nil
}
