package ipam

import (
	"strings"
	"testing"
)

// FuzzParseReservation: any file content either parses to an attachment
// that round-trips through the written form, or is rejected (and would be
// reclaimed); never a panic.
func FuzzParseReservation(f *testing.F) {
	for _, s := range []string{"abc\r\neth0", "abc", "", "\x00\x00", " abc \r\neth0\n", "abc\r\n", "a\nb\r\nc", "\r\neth0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, ok := parseReservation(data)
		if !ok {
			return
		}
		if a.ContainerID == "" || strings.ContainsAny(a.ContainerID, "\x00\n") {
			t.Fatalf("accepted container ID %q", a.ContainerID)
		}
		back, ok := parseReservation([]byte(a.ContainerID + lineBreak + a.IfName))
		if !ok || back != a {
			t.Fatalf("round trip of %+v: %+v, %v", a, back, ok)
		}
	})
}
