package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

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
	// A server stopped a moment ago on the same ports may still hold a
	// listener while its goroutines wind down (seen on a loaded machine:
	// "bind: address already in use" on the peer port after a wipe):
	// that is waited out, briefly.
	for wait := time.Now().Add(5 * time.Second); errors.Is(err, syscall.EADDRINUSE) && time.Now().Before(wait); {
		time.Sleep(100 * time.Millisecond)
		e, err = embed.StartEtcd(cfg)
	}
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
