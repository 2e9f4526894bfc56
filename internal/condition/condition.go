// Package condition keeps what a component is waiting for, or failing at,
// right now, one line per operation, for readiness output such as
// "waiting for PodCIDR; etcd unreachable: context deadline exceeded".
package condition

import (
	"slices"
	"strings"
	"sync"
)

// A Set holds the current condition of each operation. The zero value is
// empty and ready to use; a Set is safe for concurrent use.
type Set struct {
	mu sync.Mutex
	m  map[string]string
}

// Set records why operation what is waiting or failing; cond "" clears it.
func (s *Set) Set(what, cond string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cond == "" {
		delete(s.m, what)
		return
	}
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[what] = cond
}

// String returns the conditions sorted, each once, joined with "; ", or ""
// when there are none.
func (s *Set) String() string {
	s.mu.Lock()
	conds := make([]string, 0, len(s.m))
	for _, c := range s.m {
		conds = append(conds, c)
	}
	s.mu.Unlock()
	slices.Sort(conds)
	return strings.Join(slices.Compact(conds), "; ")
}
