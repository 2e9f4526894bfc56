package etcdtest

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// StartIn starts an embedded server whose listeners live in another network
// namespace, at host (an address of that namespace): do runs a function on
// a thread inside it (netnstest's Namespace.Do). Programs running in that
// namespace's segment, such as agents started with ip netns exec, reach it
// at Endpoint; the test reaches it with NewClientIn. It has no front proxy,
// so Stop is graceful rather than abrupt.
func StartIn(t T, do func(func() error) error, host netip.Addr) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		name:      "weft-test",
		dir:       t.TempDir(),
		clientURL: url.URL{Scheme: "http", Host: net.JoinHostPort(host.String(), "2379")},
		peerURL:   url.URL{Scheme: "http", Host: net.JoinHostPort(host.String(), "2380")},
		in:        do,
	}
	s.cluster = s.name + "=" + s.peerURL.String()
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatalf("etcdtest: start in namespace: %v", err)
	}
	return s
}

// NewClientIn returns a client that reaches endpoints from inside a
// namespace: every connection's socket is created there by do.
func NewClientIn(t T, do func(func() error) error, endpoints ...string) *clientv3.Client {
	t.Helper()
	return newClientIn(t, do, "", "", endpoints)
}

// NewRootClientIn is NewClientIn logged in as RootUser (see EnableAuth).
func NewRootClientIn(t T, do func(func() error) error, endpoints ...string) *clientv3.Client {
	t.Helper()
	return newClientIn(t, do, RootUser, RootPassword, endpoints)
}

func newClientIn(t T, do func(func() error) error, user, password string, endpoints []string) *clientv3.Client {
	t.Helper()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop(),
		Username: user, Password: password,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
