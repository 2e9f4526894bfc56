package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// newClient is the etcd client New makes when Options.Client is nil: it
// never connects here (gRPC connects at the first request), and its
// dial options are tuned for an agent (see each).
func newClient(opts Options) (*clientv3.Client, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd: Options.Endpoints is empty: name at least one etcd client URL")
	}
	var tlsConfig *tls.Config
	if opts.CAFile != "" || opts.CertFile != "" || opts.KeyFile != "" {
		info := transport.TLSInfo{CertFile: opts.CertFile, KeyFile: opts.KeyFile, TrustedCAFile: opts.CAFile}
		var err error
		if tlsConfig, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd: TLS files (CA %q, cert %q, key %q): %w", opts.CAFile, opts.CertFile, opts.KeyFile, err)
		}
	}
	dialOptions := []grpc.DialOption{
		// Fixed flow-control windows: gRPC otherwise grows them with
		// the bandwidth it sees, up to 16 MiB a stream, and a
		// response refused for its size (see MaxRecvBytes) is
		// buffered up to the window before it is refused. A
		// control plane's responses are small; 1 MiB keeps a LAN's
		// round trip from limiting them.
		grpc.WithInitialWindowSize(recvWindow),
		grpc.WithInitialConnWindowSize(recvWindow),
		// gRPC's default reconnect backoff grows to two minutes; an
		// agent should be back within seconds of etcd returning.
		grpc.WithConnectParams(grpc.ConnectParams{
			// At most 2s (2.4s with jitter) from etcd's return to a
			// connection, so that a wiped store is found and this
			// node's lease re-asserted within 5s.
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if opts.Username != "" && opts.Password != "" {
		// Not clientv3's Username and Password: with them, its New
		// logs in before it returns, and fails when etcd is down.
		dialOptions = append(dialOptions, newTokenAuth(opts.Username, opts.Password).dialOptions()...)
	}
	// Without a DialTimeout and a blocking dial option, clientv3.New
	// does not connect: gRPC connects at the first request.
	c, err := clientv3.New(clientv3.Config{
		Endpoints: opts.Endpoints,
		TLS:       tlsConfig,
		// A connection can die without a word: the node's address
		// changed (DHCP, a NIC replaced), or etcd's host lost power.
		// Pings find it within keepAliveTime+keepAliveTimeout, and the
		// client dials again, from the node's current address; without
		// them, TCP's retransmissions take a quarter of an hour. Only
		// while a stream is open: etcd refuses pings on a connection with
		// none (too_many_pings), and pings more often than every 5s.
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		PermitWithoutStream:  false,
		Logger:               zap.NewNop(), // this package logs what matters through slog
		MaxCallRecvMsgSize:   MaxRecvBytes,
		DialOptions:          dialOptions,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: client for %v: %w", opts.Endpoints, err)
	}
	return c, nil
}
