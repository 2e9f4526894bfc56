package admit_test

import (
	"testing"

	"github.com/weftnet/weft/lease/admit"
)

// TestReasonsImmutable: what a caller does with Reasons' list changes
// nothing for the next caller (it was a mutable exported slice, whose
// order also decoded every verdict's reason).
func TestReasonsImmutable(t *testing.T) {
	r := admit.Reasons()
	if len(r) == 0 || r[0] != admit.ReasonValue {
		t.Fatalf("Reasons() = %v", r)
	}
	r[0] = "changed"
	if got := admit.Reasons()[0]; got != admit.ReasonValue {
		t.Errorf("a caller's change reached the next caller: Reasons()[0] = %q", got)
	}
}
