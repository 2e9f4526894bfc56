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
	"slices"
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
	// Released is when the last attachment was seen released; the zero
	// time while it holds its IPs. A hint expires a TTL after it.
	Released time.Time `json:"released,omitzero"`
}

func (r *Record) pod() Pod { return Pod{Namespace: r.Namespace, Name: r.Name, UID: r.UID} }

func (r *Record) attachment() Attachment {
	return Attachment{ContainerID: r.ContainerID, IfName: r.IfName}
}

// expired reports whether the record's IPs stopped being a hint: its pod
// released them ttl or longer ago.
func (r *Record) expired(now time.Time, ttl time.Duration) bool {
	return !r.Released.IsZero() && now.Sub(r.Released) >= ttl
}

// Records live in recordDir, named by a hash of namespace and name: a
// namespace and a name may each be 253 bytes, a file name at most 255,
// and no separator is safe in both. Beside each, for each of its IPs, a
// marker: a symbolic link "ip-<IP>" to the record, so that whether an IP
// is remembered for a pod is a name in a directory listing, not a read of
// every record.
const markerPrefix = "ip-"

func recordName(p Pod) string {
	sum := sha256.Sum256([]byte(p.Namespace + "\x00" + p.Name))
	return hex.EncodeToString(sum[:])
}

func isRecordName(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

func (s *store) recordPath(p Pod) string { return filepath.Join(s.dir, recordDir, recordName(p)) }

// hasRecordFile reports whether p has a record file, readable or not.
func (s *store) hasRecordFile(p Pod) bool {
	_, err := os.Lstat(s.recordPath(p))
	return err == nil
}

// record reads p's record, or returns nil if there is none.
func (s *store) record(p Pod) (*Record, error) {
	r, err := s.readRecord(recordName(p))
	if r != nil && (r.Namespace != p.Namespace || r.Name != p.Name) {
		return nil, nil // a hash collision, practically impossible: no record
	}
	return r, err
}

// readRecord reads the record in file name, or returns nil if there is no
// readable one.
func (s *store) readRecord(name string) (*Record, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, recordDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: pod record %s: %w", name, err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil || r.Name == "" {
		// Records are replaced atomically, so this is damage from
		// outside (or a lazy write lost to a power cut): forget it.
		return nil, nil
	}
	return &r, nil
}

// records reads every pod record, removing stale temporary files of
// interrupted writes.
func (s *store) records() ([]*Record, error) {
	dir := filepath.Join(s.dir, recordDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	var out []*Record
	for _, e := range entries {
		switch name := e.Name(); {
		case strings.HasPrefix(name, "."):
			os.Remove(filepath.Join(dir, name))
		case isRecordName(name):
			r, err := s.readRecord(name)
			if err != nil {
				return nil, err
			}
			if r == nil {
				// Unreadable: a new record whose writer died before it
				// wrote, or damage. It remembers nothing.
				os.Remove(filepath.Join(dir, name))
				continue
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// markers lists the IPs that have a marker.
func (s *store) markers() (map[netip.Addr]bool, error) {
	f, err := os.Open(filepath.Join(s.dir, recordDir))
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	out := map[netip.Addr]bool{}
	for _, n := range names {
		if ip, err := netip.ParseAddr(strings.TrimPrefix(n, markerPrefix)); err == nil && strings.HasPrefix(n, markerPrefix) {
			out[ip] = true
		}
	}
	return out, nil
}

// hintFor returns the record ip is remembered for, following its marker,
// or nil. A marker whose record is gone or no longer lists ip is removed.
func (s *store) hintFor(ip netip.Addr) (*Record, error) {
	path := filepath.Join(s.dir, recordDir, markerPrefix+ip.String())
	target, err := os.Readlink(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	r, err := s.readRecord(filepath.Base(target))
	if err != nil {
		return nil, err
	}
	for _, rip := range recordIPs(r) {
		if rip == ip {
			return r, nil
		}
	}
	os.Remove(path)
	return nil, nil
}

func recordIPs(r *Record) []netip.Addr {
	if r == nil {
		return nil
	}
	return r.IPs
}

// putRecord writes r durably (temporary file, fsync, rename, directory
// fsync) and points the markers of its IPs at it, removing those of the
// IPs old had and r has not. old is r as it was, nil if new.
func (s *store) putRecord(r, old *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.recordPath(r.pod()), data, 0o644); err != nil {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return s.syncMarkers(r, old)
}

// putRecordDeferSync is putRecord but for the syncs it can leave to the
// caller, to run at the same time as others. A new record (old is nil) is
// created in place, exclusively: there is no old version for a torn write
// to lose, and a torn new one reads as no record. So it needs no temporary
// file and no rename, and both its syncs can wait: the file's and the
// directory's. A replaced record goes through a synced temporary file and
// a rename, and leaves the directory's sync.
func (s *store) putRecordDeferSync(r, old *Record) ([]pending, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	path := s.recordPath(r.pod())
	dirSync := pending{sync: func() error { return atomicfile.SyncDir(filepath.Dir(path)) }, abort: func() {}}
	var pend []pending
	if old == nil {
		var f *os.File
		if f, err = createWith(path, data); err == nil {
			pend = []pending{fileSync(f), dirSync}
		}
	}
	if old != nil || errors.Is(err, fs.ErrExist) {
		// An unreadable file is in the way, or this is a replacement.
		if _, err = atomicfile.WriteDeferSync(path, data, 0o644); err == nil {
			pend = []pending{dirSync}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	if err := s.syncMarkers(r, old); err != nil {
		for _, p := range pend {
			p.abort()
		}
		return nil, err
	}
	return pend, nil
}

// createWith creates path exclusively with data and returns it open, for
// its sync.
func createWith(path string, data []byte) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// putRecordLazily replaces r's file atomically but without waiting for the
// disk: for changes a power cut may lose (the time a hint's TTL starts).
func (s *store) putRecordLazily(r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := s.recordPath(r.pod())
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return nil
}

// syncMarkers makes the markers of r's IPs point at r and removes those of
// old's IPs that r no longer has.
func (s *store) syncMarkers(r, old *Record) error {
	dir := filepath.Join(s.dir, recordDir)
	target := recordName(r.pod())
	for _, ip := range recordIPs(old) {
		path := filepath.Join(dir, markerPrefix+ip.String())
		// Only this record's: another may remember the IP too.
		if cur, err := os.Readlink(path); err == nil && cur == target && !slices.Contains(r.IPs, ip) {
			os.Remove(path)
		}
	}
	for _, ip := range r.IPs {
		path := filepath.Join(dir, markerPrefix+ip.String())
		if cur, err := os.Readlink(path); err == nil && cur == target {
			continue
		}
		os.Remove(path)
		if err := os.Symlink(target, path); err != nil {
			return fmt.Errorf("ipam: marker of %s: %w", ip, err)
		}
	}
	return nil
}

// deleteRecord removes r and its markers.
func (s *store) deleteRecord(r *Record) error {
	dir := filepath.Join(s.dir, recordDir)
	for _, ip := range r.IPs {
		path := filepath.Join(dir, markerPrefix+ip.String())
		if cur, err := os.Readlink(path); err == nil && cur == recordName(r.pod()) {
			os.Remove(path)
		}
	}
	if err := os.Remove(s.recordPath(r.pod())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return nil
}
