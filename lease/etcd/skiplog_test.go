package etcd

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestSkipLogBounded: a burst of 1,000 skipped keys is skipBurst lines
// naming their keys, then one line counting the rest and naming the last,
// once a second has passed; and a key skipped later is named again.
func TestSkipLogBounded(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	now := time.Unix(1e9, 0)
	s := skipLog{now: func() time.Time { return now }}
	for i := range 1000 {
		s.warn(log, "skipping lease with a malformed value", fmt.Sprint("/k/", i), "err", "bad")
	}
	s.flush(log)
	if n := strings.Count(out.String(), "\n"); n != skipBurst {
		t.Fatalf("%d lines for a burst of 1,000, want %d:\n%s", n, skipBurst, out.String())
	}
	now = now.Add(time.Second)
	s.flush(log)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, fmt.Sprint("count=", 1000-skipBurst)) || !strings.Contains(last, "last_key=/k/999") {
		t.Errorf("the count of the rest: %s", last)
	}
	now = now.Add(time.Minute)
	s.warn(log, "skipping lease with a malformed value", "/k/late", "err", "bad")
	if !strings.Contains(out.String(), "key=/k/late") {
		t.Error("a key skipped a minute later is not named")
	}
}
