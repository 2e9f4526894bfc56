// Package apitest runs a real kube-apiserver in the test process, backed by
// an embedded etcd of its own, for integration tests of code that talks to
// Kubernetes through client-go.
//
// It is a separate module so that weft's library module never requires
// k8s.io/kubernetes.
package apitest

import (
	"testing"
	"time"

	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/rest"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"

	"github.com/weftnet/weft/internal/etcdtest"
)

// DefaultFlags are the kube-apiserver flags Start passes before the caller's
// own (a later flag wins).
var DefaultFlags = []string{
	// Authorize with RBAC (and the Node authorizer, as real clusters do).
	// The admin config is in system:masters, which every mode allows.
	"--authorization-mode=Node,RBAC",
	// No controller-manager runs, so nothing would create service-account
	// tokens for pods; the tests create no pods anyway.
	"--disable-admission-plugins=ServiceAccount",
}

// Server is a running kube-apiserver.
type Server struct {
	// Admin authenticates with the server's loopback token as a member of
	// system:masters: every request is allowed, and it may impersonate.
	Admin *rest.Config
	// EtcdEndpoint is the client URL of the server's etcd.
	EtcdEndpoint string
	// StartTime is how long the kube-apiserver took to become healthy.
	StartTime time.Duration
}

// Start starts an embedded etcd and a kube-apiserver on it, both on random
// ports of 127.0.0.1, and registers their teardown with t.Cleanup (the
// apiserver is stopped first, then etcd; their directories are removed).
func Start(t testing.TB, flags ...string) *Server {
	t.Helper()
	// The etcd of weft's other tests: embedded, unless WEFT_ETCD_BINARY
	// names a binary, which the Makefile sets only for the etcd suites of
	// the root module.
	endpoint := etcdtest.Start(t).Endpoint()

	storage := storagebackend.NewDefaultConfig("/registry", nil) // etcd is this server's alone
	storage.Transport.ServerList = []string{endpoint}

	opts := kubeapiservertesting.NewDefaultTestServerOptions()
	begin := time.Now()
	srv, err := kubeapiservertesting.StartTestServer(t, opts, append(append([]string{}, DefaultFlags...), flags...), storage)
	if err != nil {
		t.Fatalf("apitest: start kube-apiserver: %v", err)
	}
	took := time.Since(begin)
	t.Cleanup(func() {
		begin := time.Now()
		srv.TearDownFn()
		t.Logf("apitest: kube-apiserver stopped in %v", time.Since(begin))
	})
	return &Server{Admin: srv.ClientConfig, EtcdEndpoint: endpoint, StartTime: took}
}

// As returns a copy of the admin config that impersonates user (and groups):
// requests are authorized as that user, e.g.
// "system:serviceaccount:kube-system:flannel".
func (s *Server) As(user string, groups ...string) *rest.Config {
	c := rest.CopyConfig(s.Admin)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return c
}
