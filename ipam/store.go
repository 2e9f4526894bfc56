package ipam

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/atomicfile"
)

// The store's layout is host-local's, so that a node can switch between
// host-local and weft without losing a reservation: in the network's
// directory, one file per reserved IP, named by the IP, holding
// "<container ID>\r\n<interface>"; a file "lock" that both flock; and
// "last_reserved_ip.<range index>". weft adds its pod records in a
// subdirectory: host-local walks it too when it looks a container up, but
// nothing there can ever read as a reservation.
const (
	lockFile         = "lock"
	lastReservedFile = "last_reserved_ip."
	recordDir        = "weft-pods"
	lineBreak        = "\r\n"
)

// An Attachment is one interface of one container: what a reservation
// belongs to, in CNI's terms.
type Attachment struct {
	ContainerID string
	IfName      string
}

// store is one network's directory. Its methods, but for open and lock,
// must be called with the lock held.
type store struct {
	dir string
}

// processLocks keeps one mutex per directory within this process, beside
// the flock between processes: goroutines then queue on the mutex rather
// than each blocking a thread in flock.
var processLocks sync.Map // cleaned dir -> *sync.Mutex

// openStore makes the network's directory if needed.
func openStore(dir string) (*store, error) {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(filepath.Join(dir, recordDir), 0o755); err != nil {
		return nil, fmt.Errorf("ipam: data directory: %w", err)
	}
	return &store{dir: dir}, nil
}

// lock takes the process mutex and the flock on the directory's lock file,
// as host-local does, and returns the unlock.
func (s *store) lock() (func(), error) {
	mu, _ := processLocks.LoadOrStore(s.dir, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		mu.(*sync.Mutex).Unlock()
		return nil, fmt.Errorf("ipam: lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		mu.(*sync.Mutex).Unlock()
		return nil, fmt.Errorf("ipam: lock %s: %w", f.Name(), err)
	}
	return func() {
		f.Close() // releases the flock
		mu.(*sync.Mutex).Unlock()
	}, nil
}

// reservations reads every reservation. A file named by an IP that holds no
// attachment (empty or garbage: a writer died between creating and
// writing it, or a power loss emptied it) is removed, as no live
// attachment can be holding it: writers hold the lock from create to
// fsync.
func (s *store) reservations() (map[netip.Addr]Attachment, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	out := make(map[netip.Addr]Attachment, len(entries))
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || e.IsDir() {
			s.removeStaleTemp(e)
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ipam: %w", err)
		}
		a, ok := parseReservation(data)
		if !ok {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("ipam: reclaim %s: %w", e.Name(), err)
			}
			continue
		}
		out[ip] = a
	}
	return out, nil
}

// taken lists the reserved IPs by name alone: one directory read, however
// many reservations. Their holders are read only where needed (holder).
func (s *store) taken() (map[netip.Addr]bool, error) {
	names, err := dirNames(s.dir)
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Addr]bool, len(names))
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			out[ip] = true
		}
	}
	return out, nil
}

// dirNames lists the names in dir, unsorted: no stat of each, as
// os.ReadDir would make.
func dirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	return names, nil
}

// holder reads ip's reservation: ok is false if there is none. A file that
// holds no attachment (see reservations) is removed and reported as none.
func (s *store) holder(ip netip.Addr) (a Attachment, ok bool, err error) {
	path := filepath.Join(s.dir, ip.String())
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Attachment{}, false, nil
	}
	if err != nil {
		return Attachment{}, false, fmt.Errorf("ipam: %w", err)
	}
	if a, ok = parseReservation(data); !ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Attachment{}, false, fmt.Errorf("ipam: reclaim %s: %w", ip, err)
		}
	}
	return a, ok, nil
}

// removeStaleTemp removes a temporary file atomicfile left behind when the
// process writing it died: nothing reads it, and only the lock holder
// writes.
func (s *store) removeStaleTemp(e fs.DirEntry) {
	if !e.IsDir() && strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp") {
		os.Remove(filepath.Join(s.dir, e.Name()))
	}
}

// parseReservation reads "<container ID>\r\n<interface>", or a bare
// container ID, as host-local wrote before it recorded interfaces.
func parseReservation(data []byte) (Attachment, bool) {
	id, ifname, _ := strings.Cut(strings.TrimSpace(string(data)), lineBreak)
	id = strings.TrimSpace(id)
	// "{": no container ID starts so, but a record does, written into a
	// spare whose rename a power cut undid (see fillSpare).
	if id == "" || id[0] == '{' || strings.ContainsAny(id, "\x00\n") || strings.ContainsAny(ifname, "\x00\r\n") {
		return Attachment{}, false
	}
	return Attachment{ContainerID: id, IfName: ifname}, true
}

// A syncBatch makes a set of written files and directory entries durable
// together. Its sync runs their fsyncs at once: on a journalling file
// system the first commits the running transaction, which holds every
// change of the batch, and the others wait for that same commit. Run one
// after the other, each later fsync, finding its change committed, would
// still flush the device's cache once more (measured: 5-8% fewer ADDs a
// second on this machine's ext4). One of them runs on the caller's
// goroutine, which would otherwise only wait: in a plugin process that is
// a thread fewer to start (4% more ADDs a second).
type syncBatch struct {
	files []*os.File
	dirs  []string
}

// addFile adds f, written and open; the batch closes it.
func (b *syncBatch) addFile(f *os.File) { b.files = append(b.files, f) }

// addDir adds directory dir, for the entries made or removed in it.
func (b *syncBatch) addDir(dir string) {
	if !slices.Contains(b.dirs, dir) {
		b.dirs = append(b.dirs, dir)
	}
}

// abort gives the batch up, closing its files.
func (b *syncBatch) abort() {
	for _, f := range b.files {
		f.Close()
	}
	b.files, b.dirs = nil, nil
}

// sync makes the batch durable, and closes its files whatever it returns.
func (b *syncBatch) sync() error {
	defer b.abort()
	var syncs []func() error
	for _, f := range b.files {
		syncs = append(syncs, func() error {
			if err := f.Sync(); err != nil {
				return fmt.Errorf("ipam: sync %s: %w", f.Name(), err)
			}
			return nil
		})
	}
	for _, d := range b.dirs {
		syncs = append(syncs, func() error {
			if err := atomicfile.SyncDir(d); err != nil {
				return fmt.Errorf("ipam: %w", err)
			}
			return nil
		})
	}
	if len(syncs) == 0 {
		return nil
	}
	errs := make(chan error, len(syncs)-1)
	for _, s := range syncs[1:] {
		go func() { errs <- s() }()
	}
	first := syncs[0]()
	for range syncs[1:] {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// reserve creates ip's file for a, exclusively, and adds it to b. It
// reports false if the IP is already taken.
//
// The directory is not synced for the new entry: the file's fsync makes
// its name durable on the journalling file systems a node's /var lives on
// (ext4 and XFS commit the entry with the file; btrfs logs it with the
// file), and a sync of the directory cost 4% of the ADD rate, measured.
func (s *store) reserve(b *syncBatch, ip netip.Addr, a Attachment) (ok bool, err error) {
	path := filepath.Join(s.dir, ip.String())
	f, err := createWith(path, []byte(strings.TrimSpace(a.ContainerID)+lineBreak+a.IfName))
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ipam: reserve %s: %w", ip, err)
	}
	b.addFile(f)
	return true, nil
}

// createWith creates path exclusively with data and returns it open, for
// its sync. On failure no file is left.
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

// release removes ip's reservation; one already gone is not an error.
func (s *store) release(ip netip.Addr) error {
	if s.keepAsSpare(ip) {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dir, ip.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipam: release %s: %w", ip, err)
	}
	return nil
}

// lastReserved returns the last IP reserved in range index i, if known.
func (s *store) lastReserved(i int) netip.Addr {
	data, err := os.ReadFile(filepath.Join(s.dir, fmt.Sprint(lastReservedFile, i)))
	if err != nil {
		return netip.Addr{}
	}
	ip, _ := netip.ParseAddr(string(bytes.TrimSpace(data)))
	return ip
}

// setLastReserved records the last IP reserved in range index i. It is
// where the round-robin goes on from, nothing more: a file lost or torn by
// a power cut only makes it start over earlier. So it is written in place
// without waiting for the disk, as host-local, which shares it, does; and
// overwritten rather than truncated first, which on ext4 frees and
// reallocates its block on every ADD (a fifth of an ADD's file system
// time, measured).
func (s *store) setLastReserved(i int, ip netip.Addr) error {
	f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprint(lastReservedFile, i)), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	text := ip.String()
	_, err = f.WriteAt([]byte(text), 0)
	if err == nil {
		err = f.Truncate(int64(len(text)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	return nil
}
