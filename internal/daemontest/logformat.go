package daemontest

import (
	"bufio"
	"regexp"
	"strings"
)

// slogLine is the start of a line in the daemon's one log format: slog's
// text handler.
var slogLine = regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR)([+-]\d+)? msg=`)

// OtherFormats returns the lines of a daemon's log that are not in its
// one format (slog's text), such as a library's klog header lines.
func OtherFormats(log string) []string {
	var bad []string
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !slogLine.MatchString(line) {
			bad = append(bad, line)
		}
	}
	return bad
}
