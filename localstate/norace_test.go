//go:build !race

package localstate_test

const raceEnabled = false
