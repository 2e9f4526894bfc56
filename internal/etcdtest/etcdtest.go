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
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
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
	"google.golang.org/grpc"

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

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.in != nil:
		return s.in(s.startEmbedded)
	case s.binary != "":
		return s.startProcess()
	}
	return s.startEmbedded()
}

func (s *Server) startEmbedded() error {
	cfg := embed.NewConfig()
	cfg.Name = s.name
	cfg.Dir = filepath.Join(s.dir, "data")
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = s.cluster
	if s.tls != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile: s.tls.ServerCert, KeyFile: s.tls.ServerKey,
			TrustedCAFile: s.tls.CA, ClientCertAuth: true,
		}
	}
	if s.tokenTTL > 0 {
		cfg.AuthTokenTTL = uint(s.tokenTTL / time.Second)
	}
	cfg.TickMs = 10
	cfg.ElectionMs = 50
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return err
	case <-time.After(30 * time.Second):
		e.Close()
		return errors.New("embedded etcd not ready after 30s")
	}
	s.embedded = e
	return nil
}

func (s *Server) startProcess() error {
	args := []string{
		"--name", s.name,
		"--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", s.clientURL.String(),
		"--advertise-client-urls", s.clientURL.String(),
		"--listen-peer-urls", s.peerURL.String(),
		"--initial-advertise-peer-urls", s.peerURL.String(),
		"--initial-cluster", s.cluster,
		"--heartbeat-interval", "10",
		"--election-timeout", "50",
		"--log-level", "error",
	}
	if s.tokenTTL > 0 {
		args = append(args, "--auth-token-ttl", strconv.Itoa(int(s.tokenTTL/time.Second)))
	}
	if s.tls != nil {
		args = append(args, "--cert-file", s.tls.ServerCert, "--key-file", s.tls.ServerKey,
			"--trusted-ca-file", s.tls.CA, "--client-cert-auth")
	}
	cmd := exec.Command(s.binary, args...)
	logFile, err := os.Create(filepath.Join(s.dir, "etcd.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	logFile.Close()
	s.process = cmd
	s.processErr = make(chan error, 1)
	go func() { s.processErr <- cmd.Wait() }()

	// Ready when a read succeeds.
	cfg := clientv3.Config{Endpoints: []string{s.clientURL.String()}, DialTimeout: time.Second, Logger: zap.NewNop()}
	if s.tls != nil {
		tlsConfig, err := transport.TLSInfo{CertFile: s.tls.ClientCert, KeyFile: s.tls.ClientKey, TrustedCAFile: s.tls.CA}.ClientConfig()
		if err != nil {
			return err
		}
		cfg.TLS = tlsConfig
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Get(ctx, "health")
		cancel()
		if err == nil || refusedAuth(err) {
			return nil // a refusal is an answer: authentication is on
		}
		select {
		case werr := <-s.processErr:
			// Gone, and its exit taken: Stop must not wait for it.
			s.process = nil
			log, _ := os.ReadFile(filepath.Join(s.dir, "etcd.log"))
			return fmt.Errorf("%s exited: %v\n%s", s.binary, werr, log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30s: %v", s.binary, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server, dropping every client connection at once as a
// crashed server would. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.front != nil {
		// Without this the embedded server waits out its request timeout
		// (over five seconds) for open watch streams to end.
		s.front.Cut()
	}
	if s.embedded != nil {
		s.embedded.Close()
		<-s.embedded.Server.StopNotify()
		s.embedded = nil
	}
	if s.process != nil {
		s.process.Process.Kill()
		<-s.processErr
		s.process = nil
	}
}

// Restart stops the server and starts it again on the same ports and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v", err)
	}
	if s.front != nil {
		s.front.Heal()
	}
}

// Wipe stops the server, moves its data away and starts an empty one on
// the same address, as an operator who lost or discarded the data
// directory would: clients see the server die and come back with no keys
// and its revision starting over.
func (s *Server) Wipe() { s.WipeWith(nil) }

// WipeWith is Wipe, calling setup, if not nil, with the new server's own
// client URL before clients can reach it again: what happens in the
// window after a wipe (the config put back, a node joining) happens
// before any agent is back.
func (s *Server) WipeWith(setup func(endpoint string)) {
	s.t.Helper()
	s.replaceData("wipe", nil, setup)
}

// replaceData stops the server, moves its data directory aside, lets fill
// (if not nil) write the new one, and starts the server on the same
// address, calling setup with its client URL before clients can reach it
// again. what names the operation in a failure.
func (s *Server) replaceData(what string, fill func(data string) error, setup func(endpoint string)) {
	s.t.Helper()
	s.Stop()
	data := filepath.Join(s.dir, "data")
	if err := os.Rename(data, data+"."+what+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)); err != nil {
		s.t.Fatalf("etcdtest: %s: %v", what, err)
	}
	if fill != nil {
		if err := fill(data); err != nil {
			s.t.Fatalf("etcdtest: %s: %v", what, err)
		}
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: start after a %s: %v", what, err)
	}
	if setup != nil {
		setup(s.clientURL.Scheme + "://" + s.clientURL.Host)
	}
	if s.front != nil {
		s.front.Heal()
	}
}

// Etcdctl returns the etcdctl beside an external server's binary, or ""
// if the server is embedded or the tool is not installed (Debian ships it
// in etcd-client).
func (s *Server) Etcdctl() string {
	if s.binary == "" {
		return ""
	}
	path := filepath.Join(filepath.Dir(s.binary), "etcdctl")
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// Snapshot saves the server's store with etcdctl snapshot save, as an
// operator backs it up, and returns the file. The server must be external
// and have an etcdctl (see Etcdctl).
func (s *Server) Snapshot() string {
	s.t.Helper()
	file := filepath.Join(s.dir, "snapshot-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".db")
	s.etcdctl("--endpoints", s.clientURL.String(), "snapshot", "save", file)
	return file
}

// RestoreWith stops the server, moves its data away, restores snapshot
// into a fresh data directory with etcdctl snapshot restore, and starts the
// server on it, on the same address: an operator restoring a backup. The
// restored store's revision is the snapshot's, below what clients had
// seen. setup runs as for WipeWith, before clients can reach the server.
func (s *Server) RestoreWith(snapshot string, setup func(endpoint string)) {
	s.t.Helper()
	s.replaceData("restore", func(data string) error {
		s.etcdctl("snapshot", "restore", snapshot, "--data-dir", data, "--name", s.name,
			"--initial-cluster", s.cluster, "--initial-advertise-peer-urls", s.peerURL.String())
		return nil
	}, setup)
}

func (s *Server) etcdctl(args ...string) {
	s.t.Helper()
	tool := s.Etcdctl()
	if tool == "" || s.tls != nil {
		s.t.Fatalf("etcdtest: etcdctl needs an external, plain-HTTP server with etcdctl beside its binary")
	}
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("etcdtest: etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
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
