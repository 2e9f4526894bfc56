package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/lease"
)

const (
	authUser     = "flannel"
	authPassword = "s3cret"
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

// authEnv is a server with the network config and, with creds,
// authentication on (user authUser, allowed the network's prefix only);
// root is a client that may do anything.
func authEnv(t *testing.T, useTLS, creds bool) (s *etcdtest.Server, root *clientv3.Client) {
	t.Helper()
	if useTLS {
		s = etcdtest.StartTLS(t)
	} else {
		s = etcdtest.Start(t)
	}
	root = s.Client(t)
	if _, err := root.Put(ctxFor(t, 10*time.Second), testPrefix+"/config", testConfig); err != nil {
		t.Fatal(err)
	}
	if creds {
		etcdtest.EnableAuth(t, root, authUser, authPassword, testPrefix+"/")
		root = s.RootClient(t)
	}
	return s, root
}

// authOptions are the Options of a node of s's, with credentials if creds
// and the client certificate if s serves TLS.
func authOptions(s *etcdtest.Server, node string, creds bool, logs *logBuffer) Options {
	o := Options{
		// Renewed every few seconds, and long enough to outlive an etcd
		// restart on a loaded machine.
		Endpoints: []string{s.Endpoint()}, Node: node, TTL: 30 * time.Second, RenewMargin: 27 * time.Second,
		RequestTimeout: 2 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", node),
	}
	if f := s.TLS(); f != nil {
		o.CAFile, o.CertFile, o.KeyFile = f.CA, f.ClientCert, f.ClientKey
	}
	if creds {
		o.Username, o.Password = authUser, authPassword
	}
	return o
}

// TestNewWhileEtcdDown (issue 29, item 4): New never fails because etcd is
// unreachable, with credentials, TLS or both. With etcd down, New returns
// a Manager; once etcd is up, the node acquires, renews and watches as
// user authUser; after etcd restarts (which forgets every token it gave
// out), reads, writes and watches go on.
func TestNewWhileEtcdDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		useTLS, auth bool
		authOff      bool // credentials given, authentication off in etcd
	}{
		{"credentials", false, true, false},
		{"TLS", true, false, false},
		{"TLS and credentials", true, true, false},
		{"credentials with authentication off", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, root := authEnv(t, tc.useTLS, tc.auth && !tc.authOff)
			s.Stop()
			logs := &logBuffer{}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("node-a's log:\n%s", logs)
				}
			})
			began := time.Now()
			m, err := New(authOptions(s, "node-a", tc.auth, logs))
			if err != nil {
				t.Fatalf("New with etcd down: %v (after %v)", err, time.Since(began).Round(time.Millisecond))
			}
			defer m.Close()
			t.Logf("New with etcd down returned in %v", time.Since(began).Round(time.Microsecond))

			ctx := ctxFor(t, 60*time.Second)
			acquired := make(chan error, 1)
			var l lease.Lease
			go func() {
				var err error
				l, err = m.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(1)})
				acquired <- err
			}()
			waitFor(t, 20*time.Second, "Acquire to report etcd unreachable", func() bool { return contains(m.Condition(), "etcd unreachable") })
			s.Restart()
			if err := <-acquired; err != nil {
				t.Fatalf("Acquire once etcd is up: %v", err)
			}
			keepCtx, stopKeep := context.WithCancel(ctx)
			defer stopKeep()
			kept := keepAsync(keepCtx, m, l)
			kv := getKV(t, root, subnetPath(l.Key))
			if kv == nil || !contains(string(kv.Value), `"WeftOwner":"node-a"`) || kv.Lease == 0 {
				t.Fatalf("node-a's key after Acquire: %+v", kv)
			}

			batches := make(chan lease.Batch, 16)
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			go m.WatchLeases(wctx, batches)
			if b := <-batches; !b.Snapshot {
				t.Fatalf("first batch: %+v, want a snapshot", b)
			} else if len(b.Events) == 0 {
				// The snapshot may be Acquire's listing, from before
				// its write; the watch brings the write next.
				waitForEvent(t, batches, l.Key, lease.Added)
			}

			// A restarted etcd has forgotten every token: the next
			// request must log in again, and the watch resume.
			s.Restart()
			var lastErr error
			waitFor(t, 30*time.Second, "Config to answer after etcd restarted", func() bool {
				_, lastErr = m.Config(ctx)
				return lastErr == nil
			})
			peer := mustKey(t, "10.244.200.0-24")
			peerAttrs := attrsFor(2)
			peerAttrs.Owner = "node-b"
			raw, _ := json.Marshal(peerAttrs)
			// A new client: clientv3's own does not always log in
			// again in time after etcd 3.4 restarted.
			root = s.Client(t)
			if tc.auth && !tc.authOff {
				root = s.RootClient(t)
			}
			if _, err := root.Put(ctx, subnetPath(peer), string(raw)); err != nil {
				t.Fatal(err)
			}
			waitForEvent(t, batches, peer, lease.Added)
			renewed := m.Renewals()
			waitFor(t, 30*time.Second, "Keep to renew after etcd restarted", func() bool { return m.Renewals() > renewed })
			stopKeep()
			if err := <-kept; !errors.Is(err, context.Canceled) {
				t.Fatalf("Keep: %v", err)
			}
			if kv := getKV(t, root, subnetPath(l.Key)); kv == nil || kv.Lease == 0 || !contains(kv.Value, `"WeftOwner":"node-a"`) {
				t.Fatalf("node-a's key after renewals: %+v", kv)
			}
		})
	}
}

// TestAuthTokenExpires: etcd forgets a token unused for --auth-token-ttl.
// A node idle past it logs in again on its next request, and a watch
// begun on a stream opened with the old token is answered.
func TestAuthTokenExpires(t *testing.T) {
	t.Parallel()
	s := etcdtest.Start(t)
	const tokenTTL = 4 * time.Second
	s.SetAuthTokenTTL(tokenTTL)
	s.Restart()
	root := s.Client(t)
	if _, err := root.Put(ctxFor(t, 10*time.Second), testPrefix+"/config", testConfig); err != nil {
		t.Fatal(err)
	}
	etcdtest.EnableAuth(t, root, authUser, authPassword, testPrefix+"/")
	logs := &logBuffer{}
	o := authOptions(s, "node-a", true, logs)
	o.RequestTimeout = 0 // the default: a login and the request again fit in it
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := ctxFor(t, 60*time.Second)
	mustAcquire(t, m, 1)
	batches := make(chan lease.Batch, 16)
	go m.WatchLeases(ctx, batches)
	<-batches

	time.Sleep(2 * tokenTTL) // twice the token's life, unused
	// One request, which logs in again inside it; on a loaded machine
	// it may take longer than the request timeout, and the next then
	// takes the token that login brought.
	var lastErr error
	waitFor(t, 30*time.Second, "Config to answer with an expired token", func() bool {
		_, lastErr = m.Config(ctx)
		if lastErr != nil {
			t.Logf("Config with an expired token: %v", lastErr)
		}
		return lastErr == nil
	})
	time.Sleep(2 * tokenTTL)
	// A new watch shares the open stream, whose token expired.
	configs := make(chan lease.Config, 4)
	go m.WatchConfig(ctx, configs)
	select {
	case <-configs:
	case <-ctx.Done():
		t.Fatalf("WatchConfig on a stream with an expired token sent nothing:\n%s", logs)
	}
	// A new client: clientv3's own, idle past the token's life, does
	// not always log in again in time against etcd 3.4.
	root = s.RootClient(t)
	if _, err := root.Put(ctx, testPrefix+"/config", `{"Network": "10.244.0.0/16", "SubnetLen": 25, "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-configs:
		if c.SubnetLen != 25 {
			t.Fatalf("config change: %+v", c)
		}
	case <-ctx.Done():
		t.Fatalf("WatchConfig missed the change:\n%s", logs)
	}
	// Not by reading the config again after a refused watch.
	if log := logs.String(); contains(log, "invalid auth token") || contains(log, "permission denied") {
		t.Errorf("a watch was refused for its token:\n%s", log)
	}
}

// TestWrongPassword: a wrong password is not a crash: New succeeds,
// Acquire waits, logging and reporting the refusal by name (not as an
// unreachable etcd); once the operator sets the password the node was
// given, it acquires without a restart.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	s, root := authEnv(t, false, true)
	logs := &logBuffer{}
	o := authOptions(s, "node-a", true, logs)
	o.Password = "wrong"
	m, err := New(o)
	if err != nil {
		t.Fatalf("New with a wrong password: %v", err)
	}
	defer m.Close()
	ctx := ctxFor(t, 60*time.Second)
	acquired := make(chan error, 1)
	go func() {
		_, err := m.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(1)})
		acquired <- err
	}()
	waitFor(t, 20*time.Second, "Acquire to report the refused login", func() bool {
		return contains(m.Condition(), "authentication failed")
	})
	cond := m.Condition()
	for _, want := range []string{authUser, "password"} {
		if !contains(cond, want) {
			t.Errorf("condition %q does not name %q", cond, want)
		}
	}
	if contains(cond, "unreachable") {
		t.Errorf("condition %q calls a refused login an unreachable etcd", cond)
	}
	if !contains(logs.String(), "authentication failed") {
		t.Errorf("the refusal was not logged:\n%s", logs)
	}
	if _, err := root.UserChangePassword(ctx, authUser, "wrong"); err != nil {
		t.Fatal(err)
	}
	if err := <-acquired; err != nil {
		t.Fatalf("Acquire once the password is right: %v", err)
	}
}

// TestUsernamePassword runs against a server with authentication enabled and
// a user allowed only the network's prefix.
func TestUsernamePassword(t *testing.T) {
	t.Parallel()
	s, _ := authEnv(t, false, true)
	logs := &logBuffer{}
	m, err := New(authOptions(s, "node-a", true, logs))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := ctxFor(t, 20*time.Second)
	l, err := m.Acquire(ctx, lease.AcquireRequest{Attrs: attrsFor(1)})
	if err != nil {
		t.Fatalf("Acquire as user %s: %v\n%s", authUser, err, logs)
	}
	keepCtx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	if err := m.Keep(keepCtx, l); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Keep as user %s: %v", authUser, err)
	}
	if m.Renewals() == 0 {
		t.Errorf("Keep as user %s renewed nothing in 8s", authUser)
	}
}

// getKV reads key through c, nil if absent.
func getKV(t *testing.T, c *clientv3.Client, key string) *kvSnapshot {
	t.Helper()
	resp, err := c.Get(ctxFor(t, 10*time.Second), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	kv := resp.Kvs[0]
	return &kvSnapshot{Value: string(kv.Value), Lease: kv.Lease, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision, Version: kv.Version}
}

// waitForEvent reads batches until one brings an event of type typ for k.
func waitForEvent(t *testing.T, batches <-chan lease.Batch, k lease.Key, typ lease.EventType) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case b := <-batches:
			for _, ev := range b.Events {
				if ev.Lease.Key == k && ev.Type == typ {
					return
				}
			}
		case <-timeout:
			t.Fatalf("no %v event for %v in 30s", typ, k)
		}
	}
}

// TestRefusedLoginOutlivesATimedOutWait: a request whose time runs out
// while a new login is still in flight, after etcd refused the last one,
// reports the refusal, not a timeout (which the Manager would call an
// unreachable etcd). A slow login cannot be had from a real etcd on
// demand, so the in-flight login here is one that never finishes.
func TestRefusedLoginOutlivesATimedOutWait(t *testing.T) {
	a := newTokenAuth("node", "wrong")
	refused := fmt.Errorf("%w: as user %q", ErrAuthentication, "node")
	a.inflight = &login{done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := a.get(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("before any login finished: %v, want the timeout", err)
	}
	a.refused = refused
	if _, _, err := a.get(ctx, nil); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("after a refused login: %v, want ErrAuthentication", err)
	}
	// A login that succeeds forgets the refusal.
	l := a.inflight
	l.token = "t"
	a.finish(l)
	if a.refused != nil {
		t.Fatalf("a successful login kept the refusal %v", a.refused)
	}
}
