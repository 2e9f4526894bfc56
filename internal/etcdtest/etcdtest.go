// Package etcdtest runs a real etcd server for tests: by default an embedded
// one (go.etcd.io/etcd/server/v3/embed), or, when the environment variable
// WEFT_ETCD_BINARY names an etcd executable, that binary as a child process,
// so the same tests run against older releases such as Debian's etcd 3.4.
//
// Servers listen on 127.0.0.1 on ports picked at random (StartIn: on an
// address of another namespace, ports 2379 and 2380), use fast election
// ticks, keep their data in a per-test directory, and are stopped and removed
// by t.Cleanup on every path. A server can be stopped and restarted on the
// same ports and data, and a Proxy in front of it can cut clients off, to
// produce the faults lease managers must survive.
package etcdtest

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/weftnet/weft/internal/testutil"
)

// T is the part of testing.TB the harness uses; see testutil.T.
type T = testutil.T

// BinaryEnv names the environment variable that selects an external etcd
// binary instead of the embedded server.
const BinaryEnv = "WEFT_ETCD_BINARY"

// A Server is one single-member etcd cluster.
type Server struct {
	t          T
	name       string // member name
	cluster    string // initial cluster: name=peerURL,...
	dir        string
	clientURL  url.URL
	peerURL    url.URL
	binary     string
	tls        *TLSFiles                // nil for plain HTTP
	tokenTTL   time.Duration            // --auth-token-ttl; 0 for etcd's default
	front      *Proxy                   // what clients dial; cut on Stop so clients see the server die; nil for StartIn
	in         func(func() error) error // runs the start inside a namespace, for StartIn
	mu         sync.Mutex
	embedded   *embed.Etcd
	process    *exec.Cmd
	processErr chan error
}

// Start starts a server and registers its teardown with t.Cleanup.
func Start(t T) *Server {
	t.Helper()
	return start(t, false)
}

// StartTLS starts a server that serves clients over TLS only and requires a
// client certificate. TLS returns the files.
func StartTLS(t T) *Server {
	t.Helper()
	return start(t, true)
}

// StartProcess starts a server that runs binary as a child process, with
// etcd's flags: Debian's etcd, or the embedded server as a process of its
// own (EmbeddedBinary), so that its CPU and memory can be measured apart
// from its clients (see Pid).
func StartProcess(t T, binary string) *Server {
	t.Helper()
	s := newMember(t, "weft-test")
	s.binary = binary
	s.cluster = s.name + "=" + s.peerURL.String()
	startAlone(t, s)
	return s
}

// Pid returns the server's process id, 0 if it runs in this process.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.process == nil {
		return 0
	}
	return s.process.Process.Pid
}

func start(t T, useTLS bool) *Server {
	t.Helper()
	s := newMember(t, "weft-test")
	s.cluster = s.name + "=" + s.peerURL.String()
	if useTLS {
		files := newTLSFiles(t, s.dir)
		s.tls = &files
		s.clientURL.Scheme = "https"
	}
	startAlone(t, s)
	return s
}

// startAlone starts a one-member server, on fresh ports again whenever
// another process took one of its ports first.
func startAlone(t T, s *Server) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := s.start()
		if err == nil {
			return
		}
		if attempt == maxStarts || !portTaken(err) {
			t.Fatalf("etcdtest: start: %v", err)
		}
		s.repick(t)
		s.cluster = s.name + "=" + s.peerURL.String()
	}
}

// maxStarts is how many times a server is started on fresh ports when
// another process took one of them between freeAddr and the bind.
const maxStarts = 5

// portTaken reports whether a start failed because a port it was given
// was taken meanwhile.
func portTaken(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// repick gives a member that failed to start fresh ports and an empty
// data directory, keeping its front proxy's address.
func (s *Server) repick(t T) {
	s.clientURL.Host, s.peerURL.Host = freeAddr(t), freeAddr(t)
	os.RemoveAll(filepath.Join(s.dir, "data"))
	if s.front != nil {
		s.front.retarget(s.clientURL.Host)
	}
}

// Endpoint returns the URL clients dial, e.g. "http://127.0.0.1:40123".
func (s *Server) Endpoint() string { return s.clientURL.Scheme + "://" + s.Addr() }

// DirectEndpoint returns the server's own client URL, which clients of
// Endpoint reach through the front proxy: for harnesses with thousands
// of clients in this process, for which the proxy would double the
// process's file descriptors and add its copying to their CPU. Its
// clients see a Stop of a process server when the process dies; those of
// an embedded server may wait out its request timeout.
func (s *Server) DirectEndpoint() string { return s.clientURL.String() }

// Addr returns the address clients dial, e.g. "127.0.0.1:40123".
func (s *Server) Addr() string {
	if s.front == nil {
		return s.clientURL.Host
	}
	return s.front.l.Addr().String()
}

// TLS returns the certificate files of a server started with StartTLS, or
// nil.
func (s *Server) TLS() *TLSFiles { return s.tls }

// External reports whether the server is an external binary rather than the
// embedded server.
func (s *Server) External() bool { return s.binary != "" }

// Client returns a client of the server, closed by t.Cleanup. For a TLS
// server it presents the client certificate.
func (s *Server) Client(t T) *clientv3.Client {
	t.Helper()
	if s.tls == nil {
		return NewClient(t, s.Endpoint())
	}
	tlsConfig, err := transport.TLSInfo{CertFile: s.tls.ClientCert, KeyFile: s.tls.ClientKey, TrustedCAFile: s.tls.CA}.ClientConfig()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// NewClient returns a client of the given endpoints, closed by t.Cleanup.
// It logs nothing: etcd's client logs every reconnect, which the fault tests
// cause on purpose.
func NewClient(t T, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago. The server binds it shortly after; the window for another process to
// take it is small, and a collision fails the start loudly.
//
// The port lies below the kernel's ephemeral range: a server restarted on
// its port (Restart, Wipe) must find it free, and a port of that range,
// once its server stops, can become the source port of any other test's
// outgoing connection ("address already in use" at the restart).
func freeAddr(t T) string {
	t.Helper()
	if lo := ephemeralLow(); lo > 2048 {
		for range 200 {
			port := 1024 + rand.IntN(lo-1024)
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				continue
			}
			l.Close()
			return "127.0.0.1:" + strconv.Itoa(port)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// ephemeralLow is the first port of the kernel's range for outgoing
// connections and ":0" listeners (32768 by default on Linux), or 0 when
// it cannot be read.
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
