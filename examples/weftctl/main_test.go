package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
