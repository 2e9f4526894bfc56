package localstate_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/localstate"
)

// TestStore: a Store writes a state once, and again only when it changes;
// a Store opened later on the same file (a restart) knows what the file
// holds and writes nothing for the same state; Load checks the identity;
// Remove leaves nothing to boot from; the first Save clears a killed
// write's temporary files.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	s := sample()
	s.Identity = localstate.Identity{} // the Store's is used
	s.Lease.Expiration = time.Now().Add(time.Hour)
	store := localstate.NewStore(dir, id, 0)
	stale := filepath.Join(dir, "."+filepath.Base(store.Path())+".tmp123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if wrote, err := store.Save(s); err != nil || !wrote {
		t.Fatalf("first save: %v, %v", wrote, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary file a killed write left is still there: %v", err)
	}
	fi, err := os.Stat(store.Path())
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := store.Save(s); err != nil || wrote {
		t.Errorf("saving the same state: %v, %v; want no write", wrote, err)
	}
	restarted := localstate.NewStore(dir, id, 0)
	if wrote, err := restarted.Save(s); err != nil || wrote {
		t.Errorf("a new Store saving what the file holds: %v, %v; want no write", wrote, err)
	}
	if again, _ := os.Stat(store.Path()); !again.ModTime().Equal(fi.ModTime()) {
		t.Errorf("an unchanged save touched the file")
	}
	got, err := restarted.Load()
	if err != nil || got.Identity != id || len(got.Peers) != 2 {
		t.Fatalf("Load: %+v, %v", got, err)
	}
	s.Peers = s.Peers[:1]
	if wrote, err := restarted.Save(s); err != nil || !wrote {
		t.Errorf("saving a changed state: %v, %v; want a write", wrote, err)
	}
	if got, err := store.Load(); err != nil || len(got.Peers) != 1 {
		t.Errorf("Load after the change: %d peers, %v", len(got.Peers), err)
	}
	other := localstate.NewStore(dir, localstate.Identity{Network: id.Network, Node: "node-b"}, 0)
	if _, err := other.Load(); !errors.Is(err, localstate.ErrForeign) {
		t.Errorf("another node's Load: %v, want ErrForeign", err)
	}
	if err := store.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load after Remove: %v", err)
	}
	if err := store.Remove(); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}

// TestStoreRefresh: a state that stays true is written again once the
// file is Refresh old, and no sooner, so that it never ages out while the
// node runs: saved daily, unchanged, for eight days, it still loads with
// a maximum age of seven.
func TestStoreRefresh(t *testing.T) {
	clock := time.Now()
	s := sample()
	s.Lease.Expiration = time.Time{} // a lease that does not lapse (kube)
	store := localstate.NewStore(t.TempDir(), id, 7*24*time.Hour)
	localstate.SetClock(store, func() time.Time { return clock })
	if wrote, err := store.Save(s); err != nil || !wrote {
		t.Fatalf("first save: %v, %v", wrote, err)
	}
	clock = clock.Add(localstate.Refresh - time.Minute)
	if wrote, _ := store.Save(s); wrote {
		t.Error("an unchanged state was written again before Refresh")
	}
	for day := 1; day <= 8; day++ {
		clock = clock.Add(24 * time.Hour)
		if wrote, err := store.Save(s); err != nil || !wrote {
			t.Fatalf("day %d: an unchanged state Refresh old: wrote %v, %v", day, wrote, err)
		}
	}
	got, err := store.Load()
	if err != nil {
		t.Fatalf("after eight days of unchanged saves: %v", err)
	}
	if d := clock.Sub(got.Written); d < -time.Second || d > time.Second {
		t.Errorf("Written %v, want the last save's %v", got.Written, clock)
	}
}

// TestStoreLoadThenSaveRemovesStale: a restarted agent Loads its file
// before it Saves (agent.Network boots from it); the first Save must still
// clear the temporary file a killed write left, or every crash mid-write
// leaves one behind for good.
func TestStoreLoadThenSaveRemovesStale(t *testing.T) {
	dir := t.TempDir()
	s := sample()
	s.Identity = localstate.Identity{}
	s.Lease.Expiration = time.Now().Add(time.Hour)
	if _, err := localstate.NewStore(dir, id, 0).Save(s); err != nil {
		t.Fatal(err)
	}
	store := localstate.NewStore(dir, id, 0)
	stale := filepath.Join(dir, "."+filepath.Base(store.Path())+".tmp456")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(); err != nil {
		t.Fatal(err)
	}
	s.PeersRevision++ // a change, so that Save writes
	if wrote, err := store.Save(s); err != nil || !wrote {
		t.Fatalf("save after load: %v, %v", wrote, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Load and Save, the temporary file a killed write left is still there: %v", err)
	}
}
