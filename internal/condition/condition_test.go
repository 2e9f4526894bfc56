package condition

import "testing"

func TestSet(t *testing.T) {
	var s Set
	if got := s.String(); got != "" {
		t.Errorf("zero Set: %q", got)
	}
	s.Set("watch", "etcd unreachable")
	s.Set("acquire", "etcd unreachable")
	s.Set("config", "waiting for the network config")
	if got, want := s.String(), "etcd unreachable; waiting for the network config"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	s.Set("watch", "")
	s.Set("acquire", "")
	s.Set("never set", "")
	if got, want := s.String(), "waiting for the network config"; got != want {
		t.Errorf("after clearing: %q, want %q", got, want)
	}
}
