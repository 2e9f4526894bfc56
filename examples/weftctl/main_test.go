package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/weftnet/weft/status"
)

// TestHostileNamesReachNoTerminal: a peer lease's node name is written by
// another machine; one holding terminal control sequences is shown
// escaped in every human format, and exactly in JSON.
func TestHostileNamesReachNoTerminal(t *testing.T) {
	hostile := "evil\x1b[2J\x1b]0;owned\x07\u009b31m"
	doc := status.Document{Version: status.Version, Time: time.Now(), Node: "n", Ready: true, Families: []status.Family{},
		Peers:   []status.Peer{{Family: "ipv4", Subnet: "10.244.3.0/24", Node: hostile, State: status.StateRejected, Reason: "subnet-conflict", Detail: "held by " + hostile}},
		Summary: status.Summary{Rejected: 1}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(doc) }))
	defer srv.Close()
	for _, args := range [][]string{{"peers"}, {"peers", "-o", "wide"}, {"status"}} {
		var out, errOut bytes.Buffer
		run(append([]string{"--url", srv.URL}, args...), &out, &errOut)
		got := out.String() + errOut.String()
		if strings.ContainsAny(got, "\x1b\x07\u009b") {
			t.Errorf("weftctl %v wrote control characters: %q", args, got)
		}
		if !strings.Contains(got, `evil\x1b[2J`) {
			t.Errorf("weftctl %v: the name is not shown escaped: %q", args, got)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"--url", srv.URL, "peers", "-o", "json"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("peers -o json: exit %d", code)
	}
	var peers []status.Peer
	if err := json.Unmarshal(out.Bytes(), &peers); err != nil || len(peers) != 1 || peers[0].Node != hostile {
		t.Errorf("JSON does not carry the name exactly: %v, %+v", err, peers)
	}
}

// hostileText is what a peer lease's owner, a kernel or control-plane
// error or a remote daemon may hold: a newline and a line of its own,
// every other kind of line break and separator, a tab (a column of its
// own), bidi overrides and escape sequences. (Invalid UTF-8 cannot
// cross JSON: encoding/json makes it U+FFFD; TestForeign has it.)
const hostileText = "x\nINJECTED\r\x0b\x0c\u0085\u2028\u2029\t\u202e\u2066\u200f\x1b[2J\u009b\u00a0\"\\end"

// fillStrings sets every string reachable from v (a pointer to a
// struct), through structs, pointers and slices, to s, and every
// json.RawMessage to a net-conf.json whose networks are s.
func fillStrings(v reflect.Value, s string) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fillStrings(v.Elem(), s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillStrings(v.Field(i), s)
			}
		}
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[json.RawMessage]() {
			raw, _ := json.Marshal(map[string]string{"Network": s, "IPv6Network": s})
			v.SetBytes(raw)
			return
		}
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		}
		for i := range v.Len() {
			fillStrings(v.Index(i), s)
		}
	case reflect.String:
		v.SetString(s)
	}
}

// TestEveryForeignFieldEscaped: with every string of the Document and
// of a probe's answer set to hostileText, no human format of any command
// lets it start a line, carry a control or separator character, or split
// a column; each such field is shown escaped.
func TestEveryForeignFieldEscaped(t *testing.T) {
	var doc status.Document
	fillStrings(reflect.ValueOf(&doc), hostileText)
	doc.Version, doc.Time = status.Version, time.Now()
	doc.Next = ""
	// Each peer in every state a command singles out.
	doc.Peers[0].State, doc.Peers[1].State = status.StateFailed, status.StateRejected
	doc.Peers[0].Probe.Reachable = false
	var answer status.ProbeAnswer
	fillStrings(reflect.ValueOf(&answer), hostileText)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == status.ProbePath {
			json.NewEncoder(w).Encode(answer)
			return
		}
		json.NewEncoder(w).Encode(doc)
	}))
	defer srv.Close()
	for _, args := range [][]string{{"status"}, {"peers"}, {"peers", "-o", "wide"}, {"repairs"}, {"repairs", "-o", "wide"}, {"probe", "p"}} {
		var out, errOut bytes.Buffer
		run(append([]string{"--url", srv.URL}, args...), &out, &errOut)
		got := out.String() + errOut.String()
		for i, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "INJECTED") {
				t.Errorf("weftctl %v: line %d is the foreign text's: %q", args, i+1, line)
			}
			if j := strings.IndexFunc(line, func(r rune) bool { return !strconv.IsPrint(r) }); j >= 0 || !utf8.ValidString(line) {
				t.Errorf("weftctl %v: line %d holds a control or separator character or invalid UTF-8 (at %d): %q", args, i+1, j, line)
			}
		}
		if !strings.Contains(got, `x\nINJECTED\r\v\f\u0085\u2028\u2029\t\u202e\u2066\u200f\x1b[2J\u009b\u00a0\"\\end`) {
			t.Errorf("weftctl %v does not show the foreign text escaped:\n%s", args, got)
		}
	}
}

// TestDaemonErrorEscaped: a daemon's refusal, its words, is shown escaped
// on one line.
func TestDaemonErrorEscaped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(status.Error{Error: hostileText})
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"--url", srv.URL, "probe", "p"}, &out, &errOut); code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	if got := errOut.String(); strings.Count(got, "\n") != 1 || strings.Contains(got, "\nINJECTED") {
		t.Errorf("the daemon's error is not one escaped line: %q", got)
	}
}
