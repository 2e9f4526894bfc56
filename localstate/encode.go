package localstate

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"time"
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
	// One buffer and encoder serve every peer. json.Encoder ends each
	// value with a newline, which is cut: the file is compact.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	for i, p := range s.Peers {
		buf.Reset()
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(toFile(p)); err != nil {
			return fmt.Errorf("localstate: encode peer %s: %w", p.Key, err)
		}
		if _, err := w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))); err != nil {
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
