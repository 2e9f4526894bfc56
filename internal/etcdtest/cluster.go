package etcdtest

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

func newMember(t T, name string) *Server {
	s := &Server{
		t:         t,
		name:      name,
		dir:       t.TempDir(),
		clientURL: url.URL{Scheme: "http", Host: freeAddr(t)},
		peerURL:   url.URL{Scheme: "http", Host: freeAddr(t)},
		binary:    os.Getenv(BinaryEnv),
	}
	s.front = NewProxy(t, s.clientURL.Host)
	t.Cleanup(s.Stop)
	return s
}

// StartCluster starts an n-member cluster. Stopping a majority of its
// members leaves the rest without a leader, which is how tests produce
// "no leader" for watches that require one.
func StartCluster(t T, n int) []*Server {
	t.Helper()
	members := make([]*Server, n)
	var peers []string
	for i := range members {
		members[i] = newMember(t, fmt.Sprintf("m%d", i))
		peers = append(peers, members[i].name+"="+members[i].peerURL.String())
	}
	for attempt := 1; ; attempt++ {
		errs := make(chan error, n)
		for _, m := range members {
			m.cluster = strings.Join(peers, ",")
			go func() { errs <- m.start() }() // members wait for each other
		}
		var failed error
		for range members {
			if err := <-errs; err != nil && failed == nil {
				failed = err
			}
		}
		if failed == nil {
			return members
		}
		if attempt == maxStarts || !portTaken(failed) {
			t.Fatalf("etcdtest: start cluster: %v", failed)
		}
		// Another process took a port: every member starts afresh.
		peers = peers[:0]
		for _, m := range members {
			m.Stop()
			m.repick(t)
			peers = append(peers, m.name+"="+m.peerURL.String())
		}
	}
}
