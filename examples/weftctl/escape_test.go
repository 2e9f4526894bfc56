package main

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestForeign(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"node-b", "node-b"},
		{"10.244.3.0/24 at 198.18.0.7", "10.244.3.0/24 at 198.18.0.7"},
		{"节点-北京", "节点-北京"},           // printable non-ASCII stays readable
		{"café\u0301", "café\u0301"}, // a combining mark is printable
		{"\ufffd", "\ufffd"},         // U+FFFD itself, valid UTF-8
		{"a\nb", `a\nb`},
		{"a\r\nb", `a\r\nb`},
		{"a\tb", `a\tb`},
		{"\x00\x07\x08\x0b\x0c\x1f", `\x00\a\b\v\f\x1f`},
		{"\x7f", `\x7f`},
		{"\u0080\u0085\u009b\u009f", `\u0080\u0085\u009b\u009f`}, // C1, NEL among them
		{"a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"\u202a\u202b\u202c\u202d\u202e", `\u202a\u202b\u202c\u202d\u202e`}, // bidi embeddings, overrides
		{"\u2066\u2067\u2068\u2069", `\u2066\u2067\u2068\u2069`},             // bidi isolates
		{"\u200e\u200f\u061c", `\u200e\u200f\u061c`},                         // bidi marks
		{"\u200b\u200d\ufeff\u00ad", `\u200b\u200d\ufeff\u00ad`},             // other format characters
		{"a\u00a0b\u3000c\u2007d", `a\u00a0b\u3000c\u2007d`},                 // spaces that are not U+0020
		{"\U000e0041", `\U000e0041`},                                         // a tag character
		{"\ue000", `\ue000`},                                                 // private use
		{"\x1b[2J\x1b]0;owned\x07", `\x1b[2J\x1b]0;owned\a`},
		{"\xff\xfe", `\xff\xfe`}, // invalid UTF-8
		{"\xe2\x80", `\xe2\x80`}, // a cut rune
		{`back\slash`, `back\\slash`},
		{`a "quote"`, `a \"quote\"`},
		{`looks\nescaped`, `looks\\nescaped`}, // not to be taken for a newline
	} {
		if got := foreign(c.in); got != c.want {
			t.Errorf("foreign(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzForeign checks foreign's contract on any input: what it shows is
// valid UTF-8 of printable runes alone (no control, separator, format
// or invalid byte, so one line, one field), and gives back the input
// exactly when unquoted, so two inputs never look alike.
func FuzzForeign(f *testing.F) {
	for _, s := range []string{"node-b", "a\nb", "\u2028", "\u202e", "\xff", `\n`, `"`, "节点", "\x1b[2J"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := foreign(in)
		if !utf8.ValidString(out) {
			t.Fatalf("foreign(%q) = %q: invalid UTF-8", in, out)
		}
		if i := strings.IndexFunc(out, func(r rune) bool { return !strconv.IsPrint(r) }); i >= 0 {
			t.Fatalf("foreign(%q) = %q: a rune that is not printable at %d", in, out, i)
		}
		back, err := strconv.Unquote(`"` + out + `"`)
		if err != nil || back != in {
			t.Fatalf("foreign(%q) = %q, which reads back as %q, %v", in, out, back, err)
		}
		if plain(in) != (out == in) {
			t.Fatalf("foreign(%q) = %q, plain says %v", in, out, plain(in))
		}
	})
}
