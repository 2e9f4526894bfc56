package localstate_test

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/weftnet/weft/localstate"
)

// manyPeers is sample() with n peers, as flanneld's vxlan leases look.
func manyPeers(n int) localstate.State {
	st := sample()
	st.Peers = st.Peers[:0]
	for i := range n {
		j := i + 1
		p := peer(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24).String(),
			netip.AddrFrom4([4]byte{172, 31, byte(j >> 8), byte(j)}).String(),
			fmt.Sprintf("0e:00:00:%02x:%02x:%02x", byte(j>>16), byte(j>>8), byte(j)), int64(j))
		st.Peers = append(st.Peers, p)
	}
	return st
}

// maxFileBytesPerPeer bounds the state file's size per peer: 198 bytes
// measured for a vxlan lease with an owner (go1.26). The file is read
// whole at boot, so its size is memory too.
const maxFileBytesPerPeer = 220

// TestFileBytesPerPeer: the state file grows by at most
// maxFileBytesPerPeer a peer.
func TestFileBytesPerPeer(t *testing.T) {
	const n = 2000
	empty, err := localstate.Encode(manyPeers(0))
	if err != nil {
		t.Fatal(err)
	}
	full, err := localstate.Encode(manyPeers(n))
	if err != nil {
		t.Fatal(err)
	}
	per := (len(full) - len(empty)) / n
	t.Logf("%d bytes per peer", per)
	if per > maxFileBytesPerPeer {
		t.Errorf("the state file holds %d bytes per peer, more than %d", per, maxFileBytesPerPeer)
	}
}

// countingWriter records the largest single write.
type countingWriter struct {
	bytes.Buffer
	largest int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	return w.Buffer.Write(p)
}

// TestEncodeStreams: EncodeTo writes the same bytes as Encode, and never
// more than a peer's worth (or the header's) at once: the encoding is not
// held whole.
func TestEncodeStreams(t *testing.T) {
	st := manyPeers(2000)
	var w countingWriter
	if err := localstate.EncodeTo(&w, st); err != nil {
		t.Fatal(err)
	}
	whole, err := localstate.Encode(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.Bytes(), whole) {
		t.Fatal("EncodeTo and Encode differ")
	}
	if w.largest > 1024 {
		t.Errorf("EncodeTo wrote %d bytes at once: it holds more than a peer's encoding", w.largest)
	}
	back, err := localstate.Decode(whole)
	if err != nil || len(back.Peers) != len(st.Peers) || back.Peers[1999].Key != st.Peers[1999].Key {
		t.Fatalf("Decode: %d peers, %v", len(back.Peers), err)
	}
}

// TestStoreHoldsNoEncoding: a Store that saved, and compared again, a
// state of 5,000 peers keeps well under a kilobyte a thousand peers of
// it, where it once kept the whole encoding (2 MB).
func TestStoreHoldsNoEncoding(t *testing.T) {
	st := manyPeers(5000)
	s := localstate.NewStore(t.TempDir(), id, 0)
	localstate.SetClock(s, func() time.Time { return now })
	// What the encoding sets up once for the process is not the Store's.
	if err := localstate.EncodeTo(io.Discard, manyPeers(1)); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if wrote, err := s.Save(st); err != nil || !wrote {
		t.Fatalf("Save = %v, %v; want a write", wrote, err)
	}
	if wrote, err := s.Save(st); err != nil || wrote {
		t.Fatalf("second Save = %v, %v; want none", wrote, err)
	}
	// Twice: what encoding/json's pools keep (its scanners) lives through
	// one collection, and is not the Store's.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(s)
	runtime.KeepAlive(st)
	t.Logf("the Store keeps %d bytes", kept)
	if kept > 5*1024 {
		t.Errorf("the Store keeps %d bytes after saving 5,000 peers: it holds the encoding, not a digest", kept)
	}
	if info, err := os.Stat(s.Path()); err != nil || info.Size() < 5000*100 {
		t.Fatalf("the file: %v, %v", info, err)
	}
}

// TestEncodeAllocations: EncodeTo allocates a few times a state, not per
// peer. Through encoding/json it allocated 9 times a peer (180,000 times
// and 12 MB for 20,000 peers, twice a save); by hand, about 20 times a
// state.
func TestEncodeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not counted under the race detector")
	}
	st := manyPeers(1000)
	allocs := testing.AllocsPerRun(5, func() {
		if err := localstate.EncodeTo(io.Discard, st); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations for 1,000 peers", allocs)
	if allocs > 100 {
		t.Errorf("EncodeTo allocated %.0f times for 1,000 peers, more than 100: a peer's encoding allocates again", allocs)
	}
}
