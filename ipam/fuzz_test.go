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

// FuzzParseMarker: any name in the record directory either parses to an
// IP and a record name that print back to the same name, or is not a
// marker; never a panic.
func FuzzParseMarker(f *testing.F) {
	rec := recordName(Pod{Namespace: "default", Name: "web"})
	for _, s := range []string{
		"ip-10.1.0.2-" + rec, "ip-fd00::2-" + rec, "ip-10.1.0.2", "ip--" + rec, "ip-10.1.0.2-" + rec[1:],
		"ip-::ffff:10.1.0.2-" + rec, "ip-fe80::1%eth0-" + rec, "at-" + rec, ".spare-10.1.0.2", rec, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ip, record, ok := parseMarker(name)
		if !ok {
			return
		}
		if !ip.IsValid() || !isRecordName(record) {
			t.Fatalf("%q: accepted %v, %q", name, ip, record)
		}
		if back := markerName(ip, record); back != name {
			t.Fatalf("%q parses to %v, %q, which names %q", name, ip, record, back)
		}
	})
}
