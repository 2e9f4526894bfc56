package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMetricsDocumented: every weft_ metric the daemon registers is in the
// README's Metrics table, and every metric there is registered.
func TestMetricsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start, end := strings.Index(section, "## Metrics"), strings.Index(section, "## Changelog")
	if start < 0 || end < start {
		t.Fatal("README has no Metrics section before the Changelog")
	}
	section = section[start:end]
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
			t.Errorf("%s is registered but not in the README's Metrics table", m)
		}
	}
	for _, m := range regexp.MustCompile("\\| `(weft_[a-z_]+)`").FindAllStringSubmatch(section, -1) {
		if !registered[m[1]] {
			t.Errorf("the README documents %s, which the daemon does not register", m[1])
		}
	}
}
