package lease

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseKeyValid(t *testing.T) {
	tests := []struct {
		in   string
		want Key
	}{
		{"10.244.3.0-24", Key{IPv4: netip.MustParsePrefix("10.244.3.0/24")}},
		{"10.0.0.0-8", Key{IPv4: netip.MustParsePrefix("10.0.0.0/8")}},
		{"192.168.0.4-30", Key{IPv4: netip.MustParsePrefix("192.168.0.4/30")}},
		{"10.244.3.0-24&fd00:1::-64", Key{netip.MustParsePrefix("10.244.3.0/24"), netip.MustParsePrefix("fd00:1::/64")}},
		{"0.0.0.0-0&fd00:1::-64", Key{IPv6: netip.MustParsePrefix("fd00:1::/64")}},
		{"0.0.0.0-8&fd00::-126", Key{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("fd00::/126")}},
		{"10.1.2.0-24&2001:db8:0:1::-64", Key{netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("2001:db8:0:1::/64")}},
	}
	for _, tt := range tests {
		got, err := ParseKey(tt.in)
		if err != nil {
			t.Errorf("ParseKey(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseKey(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
		if !got.IsValid() {
			t.Errorf("ParseKey(%q) returned invalid key", tt.in)
		}
		if s := got.String(); s != tt.in {
			t.Errorf("ParseKey(%q).String() = %q", tt.in, s)
		}
	}
}

func TestParseKeyInvalid(t *testing.T) {
	tests := []struct {
		in, why string
	}{
		{"", "no \"-<length>\""},
		{"10.244.3.0", "no \"-<length>\""},
		{"10.244.3.0-", "prefix length"},
		{"10.244.3.1-24", "host bits"},
		{"10.244.3.0-33", "prefix length"},
		{"10.244.3.0-0", "prefix length"},
		{"10.244.3.0-024", "prefix length"},
		{"10.244.3.0-+24", "prefix length"},
		{"10.244.3.0--24", "does not parse"},
		{"10.244.3.0-2 4", "prefix length"},
		{"10.244.3.0-24x", "prefix length"},
		{"10.244.3.0-24 ", "prefix length"},
		{" 10.244.3.0-24", "does not parse"},
		{"10.244.3.0-24\n", "prefix length"},
		{"010.244.3.0-24", "does not parse"},
		{"10.244.3-24", "does not parse"},
		{"fd00::-64", "not a plain IPv4"},
		{"0.0.0.0-0", "prefix length"},
		{"10.244.3.0-24&", "no \"-<length>\""},
		{"10.244.3.0-24&fd00:1::", "no \"-<length>\""},
		{"10.244.3.0-24&fd00:1::1-64", "host bits"},
		{"10.244.3.0-24&fd00:0001::-64", "canonical"},
		{"10.244.3.0-24&FD00:1::-64", "canonical"},
		{"10.244.3.0-24&fd00:1:0:0:0:0:0:0-64", "canonical"},
		{"10.244.3.0-24&10.1.0.0-16", "not a plain IPv6"},
		{"10.244.3.0-24&::ffff:10.0.0.0-120", "not a plain IPv6"},
		{"10.244.3.0-24&fe80::%eth0-64", "not a plain IPv6"},
		{"10.244.3.0-24&fd00::-129", "prefix length"},
		{"10.244.3.0-24&fd00::-0", "prefix length"},
		{"10.244.3.0-24&fd00::-64&x", "prefix length"},
		{"10.244.3.0-24&fd00::-64/", "prefix length"},
		{"0.0.0.0-0&", "no \"-<length>\""},
		{"10.244.3.0/24", "no \"-<length>\""},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if err == nil {
			t.Errorf("ParseKey(%q) = %v, want error", tt.in, k)
			continue
		}
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParseKey(%q) error %v does not match ErrInvalidKey", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.why) {
			t.Errorf("ParseKey(%q) error %q does not say %q", tt.in, err, tt.why)
		}
		if !strings.Contains(err.Error(), `"`+tt.in+`"`) && !strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
			t.Errorf("ParseKey(%q) error %q does not quote the input", tt.in, err)
		}
	}
}

func TestKeyIsValid(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("fd00::/64")
	tests := []struct {
		k    Key
		want bool
	}{
		{Key{}, false},
		{Key{IPv4: v4}, true},
		{Key{IPv6: v6}, true},
		{Key{v4, v6}, true},
		{Key{IPv4: v6}, false},
		{Key{IPv6: v4}, false},
		{Key{IPv4: netip.MustParsePrefix("10.1.0.1/24")}, false},
		{Key{IPv4: netip.MustParsePrefix("0.0.0.0/0")}, false},
		{Key{IPv6: netip.MustParsePrefix("::ffff:10.0.0.0/120")}, false},
	}
	for _, tt := range tests {
		if got := tt.k.IsValid(); got != tt.want {
			t.Errorf("%#v.IsValid() = %v, want %v", tt.k, got, tt.want)
		}
	}
	if s := (Key{}).String(); s != "invalid Key" {
		t.Errorf("Key{}.String() = %q", s)
	}
}

func TestKeyText(t *testing.T) {
	k := Key{netip.MustParsePrefix("10.244.3.0/24"), netip.MustParsePrefix("fd00:1::/64")}
	b, err := json.Marshal(map[Key]int{k: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"10.244.3.0-24\u0026fd00:1::-64":1}`; got != want {
		t.Errorf("marshal = %s, want %s", got, want)
	}
	var back map[Key]int
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back[k] != 1 {
		t.Errorf("round trip lost the key: %v", back)
	}
	if _, err := (Key{}).MarshalText(); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("MarshalText of zero Key: err = %v", err)
	}
	var bad Key
	if err := bad.UnmarshalText([]byte("10.0.0.1-8")); !errors.Is(err, ErrInvalidKey) || bad != (Key{}) {
		t.Errorf("UnmarshalText of bad key: err = %v, key = %v", err, bad)
	}
}

func TestKeyCompare(t *testing.T) {
	keys := []string{
		"10.0.1.0-24&fd00:2::-64",
		"0.0.0.0-0&fd00:1::-64",
		"10.0.1.0-24",
		"10.0.0.0-24",
		"10.0.1.0-24&fd00:1::-64",
		"9.255.0.0-16",
	}
	want := []string{
		"0.0.0.0-0&fd00:1::-64",
		"9.255.0.0-16",
		"10.0.0.0-24",
		"10.0.1.0-24",
		"10.0.1.0-24&fd00:1::-64",
		"10.0.1.0-24&fd00:2::-64",
	}
	var parsed []Key
	for _, s := range keys {
		k, err := ParseKey(s)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, k)
	}
	slices.SortFunc(parsed, Key.Compare)
	var got []string
	for _, k := range parsed {
		got = append(got, k.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("sorted = %q\nwant     %q", got, want)
	}
}

func TestKeyOverlaps(t *testing.T) {
	p := func(s string) netip.Prefix {
		if s == "" {
			return netip.Prefix{}
		}
		return netip.MustParsePrefix(s)
	}
	for _, tc := range []struct {
		a4, a6, b4, b6 string
		want           bool
	}{
		{"10.244.1.0/24", "", "10.244.1.0/24", "", true},
		{"10.244.1.0/24", "", "10.244.1.128/25", "", true},
		{"10.244.1.0/24", "", "10.244.2.0/24", "", false},
		{"10.244.1.0/24", "fd00:1::/64", "10.244.2.0/24", "fd00:1::/64", true},
		{"", "fd00:1::/64", "10.244.1.0/24", "", false},
		{"10.244.1.0/24", "", "", "fd00:1::/64", false},
		{"", "", "", "", false},
	} {
		a, b := Key{IPv4: p(tc.a4), IPv6: p(tc.a6)}, Key{IPv4: p(tc.b4), IPv6: p(tc.b6)}
		if got := a.Overlaps(b); got != tc.want || b.Overlaps(a) != got {
			t.Errorf("%v overlaps %v: %v, want %v (both ways)", a, b, got, tc.want)
		}
	}
}
