package localstate

import "time"

// SetClock gives a Store another clock, for tests of its ages.
func SetClock(s *Store, now func() time.Time) { s.now = now }
