package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
)

// RemoveStale removes the temporary files that writes of path left behind
// when the process was killed between creating and renaming them, and
// returns their names. Call it at start, before anything writes path: a
// write in flight is indistinguishable from a stale one.
func RemoveStale(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), "."+base+".tmp") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}
