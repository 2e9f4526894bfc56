package etcd

import (
	"log/slog"
	"sync"
	"time"
)

// skipLog says why a watcher skips a key, naming the key, at most
// skipBurst lines at once and one a second after that; the lines it
// leaves out are counted, and said in one line naming the last key left
// out. A writer's 100,000 bad keys would otherwise be as many log lines on
// every node, a quarter of the agent's CPU while they are written
// (BenchmarkHostileMemory's profile), ahead of the honest peers' changes.
// The zero skipLog is ready to use; it is safe for concurrent use.
type skipLog struct {
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	left    int    // lines left out since the last said
	example string // the last key left out
	now     func() time.Time
}

const skipBurst = 20

func (s *skipLog) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// allow reports whether a line may be said now, taking its token.
func (s *skipLog) allow() bool {
	now := s.clock()
	if s.last.IsZero() {
		s.tokens = skipBurst
	} else {
		s.tokens = min(skipBurst, s.tokens+now.Sub(s.last).Seconds())
	}
	s.last = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// warn says msg for key, with args, or counts it if too many were said.
func (s *skipLog) warn(log *slog.Logger, msg, key string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.allow() {
		s.left++
		s.example = key
		return
	}
	s.sayLeft(log)
	log.Warn(msg, append([]any{"key", key}, args...)...)
}

// flush says how many lines were left out, if any and if a line may be
// said now: at the end of each batch of keys, so that the count of a burst
// is said soon after it ends.
func (s *skipLog) flush(log *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.left > 0 && s.allow() {
		s.sayLeft(log)
	}
}

func (s *skipLog) sayLeft(log *slog.Logger) {
	if s.left == 0 {
		return
	}
	log.Warn("skipped more etcd keys under the subnets prefix than are logged one by one; delete them", "count", s.left, "last_key", s.example)
	s.left, s.example = 0, ""
}
