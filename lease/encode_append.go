package lease

import "encoding/json"

// AppendText implements encoding.TextAppender: k's text, as MarshalText
// returns it, appended to b.
func (k Key) AppendText(b []byte) ([]byte, error) {
	if !k.IsValid() {
		_, err := k.MarshalText()
		return b, err
	}
	return k.appendTo(b), nil
}

// AppendJSON appends the bytes MarshalJSON returns for a to b, and fails
// as it does. A node saving tens of thousands of peers' leases (its local
// state) writes each without encoding/json's reflection and allocations:
// at 20,000 peers, 160 ms and 12 MB of garbage a save, on a busy core.
// Attributes with anything unusual in them (a string that JSON escapes,
// backend data with spaces or other than ASCII) go through MarshalJSON.
func (a Attrs) AppendJSON(b []byte) ([]byte, error) {
	if !a.plain() {
		raw, err := a.MarshalJSON()
		if err != nil {
			return b, err
		}
		return append(b, raw...), nil
	}
	b = append(b, `{"PublicIP":`...)
	if a.PublicIP.IsValid() {
		b = append(a.PublicIP.AppendTo(append(b, '"')), '"')
	} else {
		b = append(b, `"0.0.0.0"`...)
	}
	b = append(b, `,"PublicIPv6":`...)
	if a.PublicIPv6.IsValid() {
		b = append(a.PublicIPv6.AppendTo(append(b, '"')), '"')
	} else {
		b = append(b, "null"...)
	}
	if a.BackendType != "" {
		b = append(append(append(b, `,"BackendType":"`...), a.BackendType...), '"')
	}
	if d := nonNull(a.BackendData); len(d) > 0 {
		b = append(append(b, `,"BackendData":`...), d...)
	}
	if d := nonNull(a.BackendV6Data); len(d) > 0 {
		b = append(append(b, `,"BackendV6Data":`...), d...)
	}
	if a.Owner != "" {
		b = append(append(append(b, `,"WeftOwner":"`...), a.Owner...), '"')
	}
	return append(b, '}'), nil
}

// plain reports whether AppendJSON may write a by hand: MarshalJSON would
// accept it, and would write its strings and backend data as they are.
func (a Attrs) plain() bool {
	if a.checkFields() != nil ||
		a.PublicIP.IsValid() && !a.PublicIP.Is4() ||
		a.PublicIPv6.IsValid() && !isPlain6(a.PublicIPv6) ||
		!plainString(a.BackendType) || !plainString(a.Owner) {
		return false
	}
	for _, d := range []json.RawMessage{nonNull(a.BackendData), nonNull(a.BackendV6Data)} {
		if len(d) > 0 && (!plainData(d) || !json.Valid(d)) {
			return false
		}
	}
	return true
}

// plainString reports whether encoding/json writes s between quotes as
// it is: printable ASCII, none of it escaped.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainData reports whether encoding/json writes raw, valid JSON, as it
// is: compact (no spaces at all, so none to remove) and printable ASCII
// that it does not escape.
func plainData(raw []byte) bool {
	for _, c := range raw {
		if c <= 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
