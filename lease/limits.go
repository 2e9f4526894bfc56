package lease

import (
	"fmt"
	"unicode/utf8"
)

// Size limits on what a lease's writer controls. Every node keeps every
// peer's lease, so what one writer puts in a lease is multiplied by the
// cluster's size: a lease over a limit is rejected before it is kept,
// whatever else it says.
//
// flannel's largest value, a dual-stack vxlan lease, is about 250 bytes,
// and weft's WeftOwner adds a node name. The limits leave a margin of
// several times that:
//
//   - MaxValueSize bounds a whole value as stored (an etcd value), before
//     it is parsed. It is loose (any value within the field limits
//     encodes within it, however escaped), since it bounds only the
//     parse; what is kept is bounded by the field limits.
//   - MaxBackendDataSize bounds BackendData and BackendV6Data each:
//     vxlan's {"VNI":1,"VtepMAC":"..."} is about 45 bytes, WireGuard's
//     {"PublicKey":"...","Port":51820} about 70.
//   - MaxBackendTypeSize bounds BackendType ("vxlan", "host-gw", ...).
//   - MaxOwnerSize bounds Owner, a node name: a Kubernetes node name is a
//     DNS subdomain of at most 253 bytes, and a host name shorter still.
const (
	MaxValueSize       = 16 << 10
	MaxBackendDataSize = 512
	MaxBackendTypeSize = 64
	MaxOwnerSize       = 253
)

// ErrTooLarge is wrapped by the errors that reject a lease, or one of its
// fields, for its size. It wraps ErrInvalidAttrs.
var ErrTooLarge = fmt.Errorf("%w: over a size limit", ErrInvalidAttrs)

// A SizeError says which part of a lease is over which limit.
type SizeError struct {
	Field string // "value" for the whole value, else the JSON field
	Size  int    // its size in bytes
	Limit int
	// AtLeast says the field is more than Size bytes: a source that
	// refused to read it knows no more.
	AtLeast bool
}

func (e *SizeError) Error() string {
	more := ""
	if e.AtLeast {
		more = "more than "
	}
	return fmt.Sprintf("%s: %s is %s%d bytes, over the limit of %d", ErrTooLarge, e.Field, more, e.Size, e.Limit)
}

// Is makes a SizeError match ErrTooLarge and ErrInvalidAttrs.
func (e *SizeError) Is(target error) bool { return target == ErrTooLarge || target == ErrInvalidAttrs }

// CheckValueSize returns a *SizeError if a stored value of n bytes is over
// MaxValueSize: a lease source calls it before it keeps or parses a value.
func CheckValueSize(n int) error {
	if n > MaxValueSize {
		return &SizeError{Field: "value", Size: n, Limit: MaxValueSize}
	}
	return nil
}

// checkFields returns a *SizeError for the first field of a over its limit.
func (a Attrs) checkFields() error {
	for _, f := range []struct {
		name  string
		size  int
		limit int
	}{
		{"BackendType", len(a.BackendType), MaxBackendTypeSize},
		{"WeftOwner", len(a.Owner), MaxOwnerSize},
		{"BackendData", escapedLen(a.BackendData), MaxBackendDataSize},
		{"BackendV6Data", escapedLen(a.BackendV6Data), MaxBackendDataSize},
	} {
		if f.size > f.limit {
			return &SizeError{Field: f.name, Size: f.size, Limit: f.limit}
		}
	}
	return nil
}

// escapedLen is how long raw JSON can be once encoding/json has written
// it out again: it escapes "<", ">" and "&" as six bytes, and U+2028 and
// U+2029 (three bytes) as six too. The backend data limits count this,
// not the bytes as read, so that backend data within its limit is within
// it however often it is read and written back.
func escapedLen(raw []byte) int {
	n := len(raw)
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '<', '>', '&':
			n += 5
		case 0xE2:
			if i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9) {
				n += 3
			}
		}
	}
	return n
}

// Quote returns s quoted for a message, cut to at most max bytes of s
// (on a rune boundary) with "..." and its full length after it, so that
// what a writer put in a field never makes a log line or report long.
func Quote(s string, max int) string {
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:runeCut(s, max)], len(s))
}

// clip is Quote without the quotes, for JSON text, which is quoted
// already where it needs to be.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:runeCut(s, max)], len(s))
}

// runeCut returns the largest n <= max at which s can be cut between runes.
func runeCut(s string, max int) int {
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return max
}
