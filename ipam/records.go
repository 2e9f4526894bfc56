package ipam

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

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

// A podRecord is what the store remembers of a pod: the IPs it had, so that
// its next sandbox gets them back, and its last attachment.
type podRecord struct {
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	UID       string       `json:"uid,omitempty"`
	IPs       []netip.Addr `json:"ips"`
	// ContainerID and IfName are the pod's last attachment. A restart
	// that keeps the pod's IPs records its attachment beside the record
	// rather than rewriting it (see setAttachment); a record read has it
	// here either way.
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifname"`
	Created     time.Time `json:"created"`
	// Updated is when the record was last written.
	Updated time.Time `json:"updated"`
	// Released is when the last attachment was seen released; the zero
	// time while it holds its IPs. A hint expires a TTL after it.
	//
	// A DEL does not rewrite the record to set it, which would cost a
	// new file: it sets the file's modification time instead (see
	// markReleased), which every write of a record sets to Updated. A
	// record read from a file modified after Updated has that time as
	// Released, unless it says otherwise.
	Released time.Time `json:"released,omitzero"`

	stamped bool // Released was read from the file's modification time
}

func (r *podRecord) pod() Pod { return Pod{Namespace: r.Namespace, Name: r.Name, UID: r.UID} }

// releaseOnlyStamped reports whether the record itself says nothing of a
// release: it is live, or its release is only stamped on its file, which
// markLive can undo without rewriting it.
func (r *podRecord) releaseOnlyStamped() bool { return r.Released.IsZero() || r.stamped }

func (r *podRecord) attachment() Attachment {
	return Attachment{ContainerID: r.ContainerID, IfName: r.IfName}
}

// expired reports whether the record's IPs stopped being a hint: its pod
// released them ttl or longer ago.
func (r *podRecord) expired(now time.Time, ttl time.Duration) bool {
	return !r.Released.IsZero() && now.Sub(r.Released) >= ttl
}

// Records live in recordDir, named by a hash of namespace and name: a
// namespace and a name may each be 253 bytes, a file name at most 255,
// and no separator is safe in both. Beside each, for each of its IPs, a
// marker named "ip-<IP>-<record's name>", so that which IPs are
// remembered, and for whom, is a directory listing rather than a read of
// every record. A marker is a hard link to its record as it was when the
// marker was made: a link costs no inode, where a file or a symbolic link
// costs an allocation, the most expensive step of an ADD on ext4. Only a
// marker's name is ever read.
const markerPrefix = "ip-"

func markerName(ip netip.Addr, record string) string {
	return markerPrefix + ip.String() + "-" + record
}

// parseMarker reads a marker's name; ok is false for any other name.
func parseMarker(name string) (ip netip.Addr, record string, ok bool) {
	rest, ok := strings.CutPrefix(name, markerPrefix)
	if !ok {
		return netip.Addr{}, "", false
	}
	addr, record, ok := strings.Cut(rest, "-") // no IP's text holds a '-'
	if !ok || !isRecordName(record) {
		return netip.Addr{}, "", false
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.String() != addr || strings.ToLower(record) != record {
		// Not a name weft makes: markerName could not remove it.
		return netip.Addr{}, "", false
	}
	return ip, record, true
}

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

// record reads p's record, or returns nil if there is none.
func (s *store) record(p Pod) (*podRecord, error) {
	r, _, err := s.recordFile(p)
	return r, err
}

// recordFile is record, and also reports whether p has a record file,
// readable or not.
func (s *store) recordFile(p Pod) (r *podRecord, file bool, err error) {
	r, file, err = s.readRecordFile(recordName(p))
	if r != nil && (r.Namespace != p.Namespace || r.Name != p.Name) {
		return nil, true, nil // a hash collision, practically impossible: no record
	}
	return r, file, err
}

// readRecord reads the record in file name, or returns nil if there is no
// readable one.
func (s *store) readRecord(name string) (*podRecord, error) {
	r, _, err := s.readRecordFile(name)
	return r, err
}

// readRecordFile is readRecord, and also reports whether the file exists.
func (s *store) readRecordFile(name string) (*podRecord, bool, error) {
	data, modTime, err := readFileAndTime(filepath.Join(s.dir, recordDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ipam: pod record %s: %w", name, err)
	}
	var r podRecord
	if err := json.Unmarshal(data, &r); err != nil || r.Name == "" || recordName(r.pod()) != name {
		// Records are replaced atomically, so this is a new record torn
		// by a power cut, or damage from outside: forget it.
		return nil, true, nil
	}
	if r.Released.IsZero() && stamped(modTime, r.Updated) {
		r.Released, r.stamped = modTime.UTC(), true
	}
	if data, err := os.ReadFile(filepath.Join(s.dir, recordDir, attachmentName(name))); err == nil {
		if a, ok := parseReservation(data); ok {
			r.ContainerID, r.IfName = a.ContainerID, a.IfName
		}
	}
	return &r, true, nil
}

// readFileAndTime reads the file at path and its modification time.
func readFileAndTime(path string) ([]byte, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	data, err := io.ReadAll(f)
	return data, fi.ModTime(), err
}

// markLive undoes markReleased: the record's pod holds its IPs again.
func (s *store) markLive(r *podRecord) error {
	if !r.stamped {
		return nil
	}
	if err := os.Chtimes(s.recordPath(r.pod()), time.Time{}, r.Updated); err != nil {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return nil
}

// A record's attachment link, "at-<record's name>", is a hard link to the
// reservation file of the first IP the pod's last ADD holds, and so holds
// that attachment in the reservation's own format. It names the pod's
// last attachment, overriding the record's, so that a restart, which
// changes only that, costs a link and a rename instead of a rewrite of
// the record. An ADD that writes the record removes it.
const attachmentPrefix = "at-"

func attachmentName(record string) string { return attachmentPrefix + record }

// setAttachment points p's attachment link at ip's reservation file,
// atomically, and adds the directory to b.
func (s *store) setAttachment(b *syncBatch, p Pod, ip netip.Addr) error {
	dir := filepath.Join(s.dir, recordDir)
	link := filepath.Join(dir, attachmentName(recordName(p)))
	tmp := filepath.Join(dir, "."+attachmentName(recordName(p))+".tmp")
	os.Remove(tmp) // debris of a writer that died here
	err := os.Link(filepath.Join(s.dir, ip.String()), tmp)
	if err == nil {
		if err = os.Rename(tmp, link); err != nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("ipam: attachment of %s: %w", p, err)
	}
	b.addDir(dir)
	return nil
}

// linkMissingMarkers gives each of r's IPs its marker where marked (the
// listing) shows none.
func (s *store) linkMissingMarkers(r *podRecord, marked map[netip.Addr][]string) error {
	name := recordName(r.pod())
	for _, ip := range r.IPs {
		if slices.Contains(marked[ip], name) {
			continue
		}
		if err := s.linkMarker(ip, name); err != nil {
			return err
		}
	}
	return nil
}

// linkMarker gives ip its marker for the record in file name; one already
// there is not an error.
func (s *store) linkMarker(ip netip.Addr, name string) error {
	dir := filepath.Join(s.dir, recordDir)
	if err := os.Link(filepath.Join(dir, name), filepath.Join(dir, markerName(ip, name))); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("ipam: marker of %s: %w", ip, err)
	}
	return nil
}

// removeAttachment removes p's attachment link: its record names the
// attachment again.
func (s *store) removeAttachment(p Pod) {
	// Not os.Remove, which tries rmdir too when the link is missing, as
	// it mostly is.
	unix.Unlink(filepath.Join(s.dir, recordDir, attachmentName(recordName(p))))
}

// stamped reports whether a record file modified at modTime and written
// at updated was stamped by markReleased since. Whole seconds are
// compared: a file system may keep no finer times (ext4 with small
// inodes), and truncate both.
func stamped(modTime, updated time.Time) bool {
	return modTime.Truncate(time.Second).After(updated.Truncate(time.Second))
}

// markReleased records that r's attachment released its IPs at now, as
// its file's modification time: one change of the file's metadata, where
// a rewrite would cost a new file and a rename. A time in Updated's second
// would read as no release, so it is moved to the next. A power cut may
// lose the change; the release is then seen again, later, by the sweep.
func (s *store) markReleased(r *podRecord, now time.Time) error {
	if next := r.Updated.Truncate(time.Second).Add(time.Second); now.Before(next) {
		now = next
	}
	if err := os.Chtimes(s.recordPath(r.pod()), time.Time{}, now); err != nil {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return nil
}

// records reads every pod record, removing stale temporary files of
// interrupted writes.
func (s *store) records() ([]*podRecord, error) {
	dir := filepath.Join(s.dir, recordDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	var out []*podRecord
	for _, e := range entries {
		switch name := e.Name(); {
		case strings.HasPrefix(name, sparePrefix):
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

// markers lists the marked IPs, each with the names of the records that
// remember it.
func (s *store) markers() (map[netip.Addr][]string, error) {
	marked, _, err := s.index()
	return marked, err
}

// index reads the record directory's listing: the marked IPs, each with
// the names of the records that remember it, and the spare files.
func (s *store) index() (marked map[netip.Addr][]string, spares []string, err error) {
	names, err := s.recordDirNames()
	if err != nil {
		return nil, nil, err
	}
	marked = map[netip.Addr][]string{}
	for _, n := range names {
		if ip, record, ok := parseMarker(n); ok {
			marked[ip] = append(marked[ip], record)
		} else if strings.HasPrefix(n, sparePrefix) {
			spares = append(spares, n)
		}
	}
	return marked, spares, nil
}

func (s *store) recordDirNames() ([]string, error) {
	return dirNames(filepath.Join(s.dir, recordDir))
}

// hintsFor returns the records that remember ip, of those its markers
// name (records). A marker whose record is gone or no longer lists ip is
// removed.
func (s *store) hintsFor(ip netip.Addr, records []string) ([]*podRecord, error) {
	var out []*podRecord
	for _, name := range records {
		r, err := s.readRecord(name)
		if err != nil {
			return nil, err
		}
		if slices.Contains(recordIPs(r), ip) {
			out = append(out, r)
			continue
		}
		os.Remove(filepath.Join(s.dir, recordDir, markerName(ip, name)))
	}
	return out, nil
}

func recordIPs(r *podRecord) []netip.Addr {
	if r == nil {
		return nil
	}
	return r.IPs
}

// putRecord writes r durably (temporary file, fsync, rename, directory
// fsync) and points the markers of its IPs at it, removing those of the
// IPs old had and r has not. old is r as it was, nil if new.
func (s *store) putRecord(r, old *podRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := s.recordPath(r.pod())
	syncDir, err := atomicfile.WriteDeferSync(path, data, 0o644, r.Updated)
	if err == nil {
		err = syncDir()
	}
	if err != nil {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return s.syncMarkers(r, old)
}

// putRecordBatch is putRecord but for the syncs it can leave to batch b,
// to be made durable with the reservations. A new record (old is nil) is
// written into one of spares (see fillSpare), or created in place,
// exclusively: there is no old version for a torn write to lose, and a
// torn new one reads as no record. So both its syncs can wait: the
// file's and the directory's. A replaced record goes through a synced
// temporary file and a rename, and leaves the directory's sync.
func (s *store) putRecordBatch(b *syncBatch, r, old *podRecord, spares []string) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := s.recordPath(r.pod())
	if old == nil {
		var f *os.File
		if f, err = s.fillSpare(spares, path, data, r.Updated); f != nil {
			b.addFile(f)
		} else if err == nil {
			if f, err = createWith(path, data); err == nil {
				b.addFile(f)
				err = os.Chtimes(path, time.Time{}, r.Updated)
			}
		}
	}
	if old != nil || errors.Is(err, fs.ErrExist) {
		// An unreadable file is in the way, or this is a replacement.
		_, err = atomicfile.WriteDeferSync(path, data, 0o644, r.Updated)
	}
	if err != nil {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	b.addDir(filepath.Dir(path))
	return s.syncMarkers(r, old)
}

// syncMarkers gives each of r's IPs its marker and removes the markers of
// old's IPs that r no longer has. r's file must exist.
func (s *store) syncMarkers(r, old *podRecord) error {
	dir := filepath.Join(s.dir, recordDir)
	name := recordName(r.pod())
	for _, ip := range recordIPs(old) {
		if !slices.Contains(r.IPs, ip) {
			os.Remove(filepath.Join(dir, markerName(ip, name)))
		}
	}
	for _, ip := range r.IPs {
		if err := s.linkMarker(ip, name); err != nil {
			return err
		}
	}
	return nil
}

// deleteRecord removes r and its markers.
func (s *store) deleteRecord(r *podRecord) error {
	dir := filepath.Join(s.dir, recordDir)
	name := recordName(r.pod())
	for _, ip := range r.IPs {
		os.Remove(filepath.Join(dir, markerName(ip, name)))
	}
	os.Remove(filepath.Join(dir, attachmentName(name)))
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipam: pod record of %s: %w", r.pod(), err)
	}
	return nil
}

// pruneLinks removes every marker that names no record of records (by
// file name) listing its IP, every attachment link of a record not in
// records, any other "ip-" name (debris of an older layout), and the
// spares beyond maxSpares.
func (s *store) pruneLinks(records map[string]*podRecord) error {
	names, err := s.recordDirNames()
	if err != nil {
		return err
	}
	spares := 0
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, markerPrefix):
			if ip, record, ok := parseMarker(n); ok && slices.Contains(recordIPs(records[record]), ip) {
				continue
			}
		case strings.HasPrefix(n, attachmentPrefix):
			if records[strings.TrimPrefix(n, attachmentPrefix)] != nil {
				continue
			}
		case strings.HasPrefix(n, sparePrefix):
			if spares++; spares <= maxSpares {
				continue
			}
		default:
			continue
		}
		os.Remove(filepath.Join(s.dir, recordDir, n))
	}
	return nil
}
