package localstate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weftnet/weft/internal/atomicfile"
)

// Refresh is how old a Store lets its file grow while the state it holds
// stays true: an unchanged Save after that rewrites it with a new Written.
const Refresh = time.Hour

// DefaultMaxAge is how old a state file NewStore accepts when given no
// maximum: a week. An edge site may be cut off for days; a peer set older
// than that is more likely wrong than right.
const DefaultMaxAge = 7 * 24 * time.Hour

// A Store keeps one network's State for one node in its file: what a
// agent.Network saves while it runs and boots from when its control plane
// does not answer (agent.NetworkConfig.LocalState).
//
// Save remembers what it last wrote (or Load read), so that a State equal
// to it, Written aside, costs an encoding into a digest and no I/O; but once what the
// file holds is Refresh old, the same State is written again, so that
// Written says when the state was last known true, to within Refresh,
// and a state that did not change for a week is not taken for one a week
// out of date. A Store is safe for
// concurrent use; two Stores, or two agents, must not share one file.
type Store struct {
	path   string
	id     Identity
	maxAge time.Duration
	now    func() time.Time

	mu sync.Mutex
	// last is the digest of the encoding, with Written zeroed, of what
	// the file holds as far as this Store knows, and written its
	// Written; known says there is one: the file was read or written.
	// A digest, not the encoding: at tens of thousands of peers the
	// encoding is megabytes a Store would hold for as long as it runs.
	last    digest
	known   bool
	written time.Time
	looked  bool // the file was read for last
	swept   bool // the temporary files of killed writes were removed
}

// NewStore returns the Store of network id.Network in dir (see Path), for
// node id.Node, accepting files written at most maxAge ago (DefaultMaxAge
// if 0). It touches no file.
func NewStore(dir string, id Identity, maxAge time.Duration) *Store {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	return &Store{path: Path(dir, id), id: id, maxAge: maxAge, now: time.Now}
}

// Path returns the file the Store keeps.
func (s *Store) Path() string { return s.path }

// Load returns the stored State, checked as Read checks it: of this
// Store's identity, not older than its maximum age, its lease not expired.
// Every error names the file; a missing file matches fs.ErrNotExist.
func (s *Store) Load() (State, error) {
	st, err := Read(s.path, s.id, s.maxAge, s.now())
	if err == nil {
		d, derr := digestOf(st)
		s.mu.Lock()
		s.last, s.known, s.written, s.looked = d, derr == nil, st.Written, true
		s.mu.Unlock()
	}
	return st, err
}

// Save stores st under the Store's identity unless the file already holds
// the same (Written aside) and was written less than Refresh ago; it
// reports whether it wrote. st.Written is set
// to the time of the write. Temporary files a killed Save left are
// removed by the first Save.
func (s *Store) Save(st State) (bool, error) {
	st.Identity = s.id
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.swept {
		// Apart from looked: a Load before the first Save reads the file
		// but leaves the temporary files to it.
		if _, err := atomicfile.RemoveStale(s.path); err != nil {
			return false, fmt.Errorf("localstate: %w", err)
		}
		s.swept = true
	}
	if !s.looked {
		s.looked = true
		if data, err := os.ReadFile(s.path); err == nil {
			if prev, err := Decode(data); err == nil && prev.Identity == s.id {
				if d, err := digestOf(prev); err == nil {
					s.last, s.known, s.written = d, true, prev.Written
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("localstate: %w", err)
		}
	}
	// The state is encoded twice, into a digest and then, if it
	// changed, into the file, and held whole neither time.
	d, err := digestOf(st)
	if err != nil {
		return false, err
	}
	now := s.now()
	if s.known && d == s.last && now.Sub(s.written) < Refresh {
		return false, nil
	}
	st.Written = now
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return false, fmt.Errorf("localstate: %w", err)
	}
	if err := atomicfile.WriteStream(s.path, 0o600, func(w io.Writer) error { return EncodeTo(w, st) }); err != nil {
		return false, fmt.Errorf("localstate: write %s: %w", s.path, err)
	}
	s.last, s.known, s.written = d, true, now
	return true, nil
}

// Remove deletes the file, so that no later boot runs from it: for a node
// that gave its lease back. A missing file is not an error.
func (s *Store) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.known, s.looked = false, true
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("localstate: %w", err)
	}
	return nil
}
