//go:build race

package admit

// raceEnabled: the race detector makes values escape that otherwise do
// not, so allocated bytes are not judged under it.
const raceEnabled = true
