//go:build race

package localstate_test

// raceEnabled: the race detector makes values escape that otherwise do
// not, so allocation counts are not judged under it.
const raceEnabled = true
