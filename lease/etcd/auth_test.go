package etcd

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/lease"
)

// TestTLS runs against a server that requires client certificates: with the
// CA, certificate and key the node acquires; without its certificate it
// waits and logs why; with a missing file New says which.
func TestTLS(t *testing.T) {
	t.Parallel()
	s := etcdtest.StartTLS(t)
	files := s.TLS()
	if _, err := s.Client(t).Put(ctxFor(t, 10*time.Second), testPrefix+"/config", testConfig); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	newManager := func(node, ca, cert, key string) (*Manager, error) {
		m, err := New(Options{
			Endpoints: []string{s.Endpoint()}, Node: node,
			CAFile: ca, CertFile: cert, KeyFile: key, RequestTimeout: 500 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
		})
		if err == nil {
			t.Cleanup(func() { m.Close() })
		}
		return m, err
	}

	m, err := newManager("node-a", files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(ctxFor(t, 10*time.Second), lease.AcquireRequest{Attrs: attrsFor(1)}); err != nil {
		t.Fatalf("Acquire over TLS: %v", err)
	}

	noCert, err := newManager("node-b", files.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 3*time.Second)
	if _, err := noCert.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(2)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire without a client certificate: %v, want to wait until the deadline", err)
	}
	if !contains(logs.String(), "acquire failed; retrying") {
		t.Errorf("the failure was not logged:\n%s", logs)
	}

	missing := filepath.Join(t.TempDir(), "nope.pem")
	_, err = newManager("node-c", files.CA, missing, files.ClientKey)
	if err == nil || !contains(err.Error(), missing) || !contains(err.Error(), "TLS files") {
		t.Fatalf("New with a missing certificate file: %v", err)
	}
}

// TestUsernamePassword runs against a server with authentication enabled and
// a user allowed only the network's prefix.
func TestUsernamePassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	ctx := ctxFor(t, 20*time.Second)
	admin := e.admin
	steps := []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.UserAdd(ctx, "flannel", "s3cret"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "flannel"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "flannel", testPrefix+"/", clientv3.GetPrefixRangeEnd(testPrefix+"/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserGrantRole(ctx, "flannel", "flannel"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}

	m, err := New(Options{Endpoints: []string{e.server.Endpoint()}, Node: "node-a", Username: "flannel", Password: "s3cret", Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(1)})
	if err != nil {
		t.Fatalf("Acquire as user flannel: %v", err)
	}
	keepCtx, cancel := context.WithTimeout(ctx, testTTL)
	defer cancel()
	if err := m.Keep(keepCtx, l); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Keep as user flannel: %v", err)
	}

	_, err = New(Options{Endpoints: []string{e.server.Endpoint()}, Node: "node-b", Username: "flannel", Password: "wrong"})
	if err == nil || !contains(err.Error(), "authentication failed") {
		t.Fatalf("New with a wrong password: %v", err)
	}
}
