package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMetricsDocumented: every weft_ metric the daemon registers is in the
// table of docs/metrics.md, and every metric there is registered.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	if !strings.Contains(section, "| Metric | Type | Labels | Meaning |") {
		t.Fatal("docs/metrics.md has no metrics table")
	}
	name := regexp.MustCompile(`"(weft_[a-z_]+)"`)
	registered := map[string]bool{}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllStringSubmatch(string(src), -1) {
			registered[m[1]] = true
		}
	}
	if len(registered) < 10 {
		t.Fatalf("found only %v in the daemon's source", registered)
	}
	for m := range registered {
		if !strings.Contains(section, "`"+m+"`") {
			t.Errorf("%s is registered but not in docs/metrics.md", m)
		}
	}
	for _, m := range regexp.MustCompile("\\| `(weft_[a-z_]+)`").FindAllStringSubmatch(section, -1) {
		if !registered[m[1]] {
			t.Errorf("docs/metrics.md documents %s, which the daemon does not register", m[1])
		}
	}
}
