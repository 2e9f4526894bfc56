package localstate

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/weftnet/weft/lease"
)

// A digest stands for an encoding a Store compares with: SHA-256, so that
// two different states never pass for one.
type digest [sha256.Size]byte

// EncodeTo writes s in the on-disk form to w, the same bytes Encode
// returns, one peer at a time: the encoding is never held whole, which at
// tens of thousands of peers is megabytes, and garbage the moment it is
// written.
func EncodeTo(w io.Writer, s State) error {
	v := FormatVersion
	// The header is file without its peers, which come last: its
	// encoding, less the closing brace, is the file's up to them.
	head, err := json.Marshal(fileHead{
		Version: &v, Network: s.Network, Node: s.Node, Written: s.Written.UTC(), Config: s.Config,
		Lease: toFile(s.Lease), VtepMAC: s.VtepMAC, VtepMACv6: s.VtepMACv6,
		PeersAt: s.PeersAt.UTC(), PeersRevision: s.PeersRevision,
	})
	if err != nil {
		return fmt.Errorf("localstate: encode: %w", err)
	}
	if _, err := w.Write(append(head[:len(head)-1], `,"peers":[`...)); err != nil {
		return err
	}
	// Each peer is appended to one buffer by hand, as encoding/json
	// would write it (see appendPeer): through encoding/json, 20,000
	// peers took 160 ms and 12 MB of garbage, twice a save.
	var buf []byte
	for i, p := range s.Peers {
		buf = buf[:0]
		if i > 0 {
			buf = append(buf, ',')
		}
		if buf, err = appendPeer(buf, p); err != nil {
			return fmt.Errorf("localstate: encode peer %s: %w", p.Key, err)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	_, err = io.WriteString(w, "]}\n")
	return err
}

// Encode returns s in the on-disk form.
func Encode(s State) ([]byte, error) {
	var buf bytes.Buffer
	if err := EncodeTo(&buf, s); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// digestOf is the digest of st's encoding with Written zeroed: what a
// Store compares, Written aside, without holding the encoding.
func digestOf(st State) (digest, error) {
	st.Written = time.Time{}
	h := sha256.New()
	if err := EncodeTo(h, st); err != nil {
		return digest{}, err
	}
	var d digest
	h.Sum(d[:0])
	return d, nil
}

// appendPeer appends l in the file's form to b: the bytes encoding/json
// writes for toFile(l), with its HTML escaping, and its errors.
func appendPeer(b []byte, l lease.Lease) ([]byte, error) {
	b = append(b, `{"key":"`...)
	start := len(b)
	b, err := l.Key.AppendText(b)
	if err != nil {
		return b, err
	}
	// A dual-stack key's "&", as encoding/json escapes it.
	if i := bytes.IndexByte(b[start:], '&'); i >= 0 {
		tail := string(b[start+i+1:])
		b = append(append(b[:start+i], `\u0026`...), tail...)
	}
	b = append(b, `","attrs":`...)
	if b, err = l.Attrs.AppendJSON(b); err != nil {
		return b, err
	}
	if !l.Expiration.IsZero() {
		t, err := l.Expiration.MarshalJSON()
		if err != nil {
			return b, err
		}
		b = append(append(b, `,"expiration":`...), t...)
	}
	if l.Seniority != 0 {
		b = strconv.AppendInt(append(b, `,"seniority":`...), l.Seniority, 10)
	}
	return append(b, '}'), nil
}
