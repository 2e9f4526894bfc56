package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// RootUser and RootPassword are the etcd root account EnableAuth creates,
// which RootClient logs in as.
const (
	RootUser     = "root"
	RootPassword = "root-secret"
)

// EnableAuth turns on etcd's authentication through admin, a client with
// no credentials: it creates the root account (RootUser), and user with
// password and a role of the same name that may read and write under
// prefix and nothing else, as an operator gives flanneld; then it enables
// authentication. From then on admin is refused: use RootClient.
func EnableAuth(t T, admin *clientv3.Client, user, password, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	steps := []struct {
		what string
		do   func() error
	}{
		{"add root", func() error { _, err := admin.UserAdd(ctx, RootUser, RootPassword); return err }},
		{"grant root", func() error { _, err := admin.UserGrantRole(ctx, RootUser, "root"); return err }},
		{"add " + user, func() error { _, err := admin.UserAdd(ctx, user, password); return err }},
		{"add role " + user, func() error { _, err := admin.RoleAdd(ctx, user); return err }},
		{"grant " + prefix, func() error {
			_, err := admin.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"grant role " + user, func() error { _, err := admin.UserGrantRole(ctx, user, user); return err }},
		{"enable auth", func() error { _, err := admin.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("etcdtest: enable auth: %s: %v", s.what, err)
		}
	}
}

// RootClient returns a client logged in as RootUser (with the client
// certificate, for a TLS server), closed by t.Cleanup. The server must be
// running: clientv3 logs in as it connects.
func (s *Server) RootClient(t T) *clientv3.Client {
	t.Helper()
	var tlsConfig *tls.Config
	if s.tls != nil {
		var err error
		tlsConfig, err = transport.TLSInfo{CertFile: s.tls.ClientCert, KeyFile: s.tls.ClientKey, TrustedCAFile: s.tls.CA}.ClientConfig()
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{s.Endpoint()}, TLS: tlsConfig, DialTimeout: 10 * time.Second, Logger: zap.NewNop(),
		Username: RootUser, Password: RootPassword,
	})
	if err != nil {
		t.Fatalf("etcdtest: root client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// SetAuthTokenTTL sets how long an authentication token the server hands
// out lives unused (etcd's --auth-token-ttl, 300s by default), from the
// server's next start or Restart on: a test of token expiry sets it short.
// Whole seconds, at least one.
func (s *Server) SetAuthTokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenTTL = max(d.Round(time.Second), time.Second)
}

// refusedAuth reports whether err is etcd refusing a request for want of
// credentials: it answered.
func refusedAuth(err error) bool {
	return errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrInvalidAuthToken)
}
