package main

import (
	"strconv"
	"unicode/utf8"
)

// foreign is how weftctl's human output shows a string other machines
// wrote: node names and reasons from peer leases, kernel and control-plane
// errors, and with --url anything the daemon says. Every rune that is not
// printable text (strconv.IsPrint: C0 and C1 controls, DEL, U+2028,
// U+2029 and every other line or paragraph separator, bidi and other
// format controls, spaces other than U+0020, private-use and unassigned
// runes), invalid UTF-8, and the backslash and double quote that
// escapes are made of, are shown as Go escapes (\n, \x1b, \u2028, \xff,
// \\, \"). A field so shown is one line of visible text that cannot pass
// for a column, a line or another field, and strconv.Unquote of it in
// double quotes gives back exactly what was written.
//
// Text that is already plain, the usual case, is returned as it is.
func foreign(s string) string {
	if plain(s) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// plain says whether foreign leaves s as it is.
func plain(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return false // an invalid byte, not U+FFFD itself
			}
		}
		if r == '\\' || r == '"' || !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// foreignList shows each of a list's strings as foreign does, joined by
// commas; "-" for none.
func foreignList(s []string) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = foreign(v)
	}
	return joinOrDash(out)
}
