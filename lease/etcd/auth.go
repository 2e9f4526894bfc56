package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrAuthentication means etcd refused this node's user name and password
// (Options.Username and Password). Requests wait, retrying, for the
// operator to fix either; the error names the user.
var ErrAuthentication = errors.New("etcd refused the user name and password")

// authenticateMethod is the RPC that logs in: it carries no token.
const authenticateMethod = "/etcdserverpb.Auth/Authenticate"

// tokenSuspect is how old a token must be before a watch etcd refuses on
// a stream opened with it is taken for an expired token, rather than the
// user's lack of permission: etcd lets a token live at least a second
// (--auth-token-ttl), so a younger one was not refused for its age.
const tokenSuspect = time.Second

// loginTimeout bounds one login. A login is not bound by the request
// that started it: under load (etcd checks a password with bcrypt), one
// can take longer than a request may, and every request would then give
// up on its own login and start another. Each request waits for the
// login in flight as long as its own context lets it.
const loginTimeout = 30 * time.Second

// tokenAuth logs in to etcd with a user name and password when a request
// first needs it, not when the client is made: clientv3 logs in inside
// New, so that an unreachable etcd would fail New and a restarting agent
// would crash instead of booting from its local state.
//
// It runs as gRPC interceptors inside clientv3's own (which retry), and
// puts the token in each request's metadata as clientv3 does. A request
// etcd refuses for its token (expired, or forgotten by a restarted etcd,
// or issued before the auth store changed) logs in again and is sent
// once more. A watch stream is opened with the current token; etcd checks
// it at each watch created on the stream, so a watch refused on a stream
// whose token may have expired breaks the stream (as a lost connection
// would) and clientv3 opens a new one, and with it a new token. A refused
// login is ErrAuthentication, which the Manager's retries report by name.
//
// It is safe for concurrent use. One login is in flight at a time, in a
// goroutine of its own that ends within loginTimeout (at once when the
// client closes), and every request waiting for a token takes the one it
// brings.
type tokenAuth struct {
	user, password string

	mu       sync.Mutex
	valid    bool      // token is what etcd last gave; false until the first login
	token    string    // "" when etcd said authentication is off
	at       time.Time // when token was had
	inflight *login    // nil when no login is in flight
	// refused is the last finished login's ErrAuthentication, nil once a
	// login succeeds: a request whose time runs out while it waits for
	// the next login reports the refusal it knows of, not a timeout that
	// would read as an unreachable etcd.
	refused error
}

// login is one login's outcome, ready when done is closed.
type login struct {
	done  chan struct{}
	token string
	at    time.Time
	err   error
}

func newTokenAuth(user, password string) *tokenAuth {
	return &tokenAuth{user: user, password: password}
}

// dialOptions install the interceptors. Chained, they run inside
// clientv3's, which are set with grpc.WithUnaryInterceptor and
// grpc.WithStreamInterceptor.
func (a *tokenAuth) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(a.unary), grpc.WithChainStreamInterceptor(a.stream)}
}

// invalidate forgets token, if it is still the current one, so that the
// next request logs in again.
func (a *tokenAuth) invalidate(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.valid && a.token == token {
		a.valid = false
	}
}

// get returns the current token, or waits for a login over cc, starting
// one if none is in flight.
func (a *tokenAuth) get(ctx context.Context, cc *grpc.ClientConn) (string, time.Time, error) {
	a.mu.Lock()
	if a.valid {
		defer a.mu.Unlock()
		return a.token, a.at, nil
	}
	l := a.inflight
	if l == nil {
		l = &login{done: make(chan struct{})}
		a.inflight = l
		go a.login(cc, l)
	}
	a.mu.Unlock()
	select {
	case <-l.done:
		return l.token, l.at, l.err
	case <-ctx.Done():
		a.mu.Lock()
		refused := a.refused
		a.mu.Unlock()
		if refused != nil {
			return "", time.Time{}, refused
		}
		return "", time.Time{}, ctx.Err()
	}
}

// login logs in over cc and records the outcome in l and, if etcd gave a
// token, in a.
func (a *tokenAuth) login(cc *grpc.ClientConn, l *login) {
	ctx, cancel := context.WithTimeout(context.Background(), loginTimeout)
	defer cancel()
	// WaitForReady, as clientv3's own requests: an etcd that is coming
	// back is waited for, within the timeout, rather than failed at once.
	resp, err := pb.NewAuthClient(cc).Authenticate(ctx, &pb.AuthenticateRequest{Name: a.user, Password: a.password}, grpc.WaitForReady(true))
	switch eerr := rpctypes.Error(err); {
	case err == nil:
		l.token = resp.Token
	case errors.Is(eerr, rpctypes.ErrAuthNotEnabled):
		// Sent without a token until etcd says one is needed.
	case errors.Is(eerr, rpctypes.ErrAuthFailed):
		l.err = fmt.Errorf("%w: as user %q: %v: check Options.Username and Password (flanneld: --etcd-username, --etcd-password) against the users etcd has (etcdctl user list)", ErrAuthentication, a.user, eerr)
	default:
		l.err = fmt.Errorf("log in to etcd as user %q: %w", a.user, eerr)
	}
	l.at = time.Now()
	a.finish(l)
}

// finish records a finished login's outcome and wakes its waiters.
func (a *tokenAuth) finish(l *login) {
	a.mu.Lock()
	switch {
	case l.err == nil:
		a.valid, a.token, a.at, a.refused = true, l.token, l.at, nil
	case errors.Is(l.err, ErrAuthentication):
		a.refused = l.err
	}
	a.inflight = nil
	a.mu.Unlock()
	close(l.done)
}

// refusedToken reports whether etcd refused a request for its token: it
// expired, etcd restarted since it was given, the auth store changed, or
// it was sent none while authentication is on.
func refusedToken(err error) bool {
	err = rpctypes.Error(err)
	return errors.Is(err, rpctypes.ErrInvalidAuthToken) || errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrAuthOldRevision)
}

func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, token)
}

// unary sends a request with the token, logging in first if there is
// none, and once more after a refused token.
func (a *tokenAuth) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == authenticateMethod {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	for attempt := 0; ; attempt++ {
		tok, _, err := a.get(ctx, cc)
		if err != nil {
			return err
		}
		err = invoker(withToken(ctx, tok), method, req, reply, cc, opts...)
		if attempt == 0 && refusedToken(err) {
			a.invalidate(tok)
			continue
		}
		return err
	}
}

// stream opens a stream with the token. A login that fails for want of
// etcd is returned as Unavailable, which clientv3's watcher retries with
// backoff (as it does a connection that is not up yet); a refused one
// ends the watch with ErrAuthentication, which the watch's owner reports
// and retries.
func (a *tokenAuth) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	tok, at, err := a.get(ctx, cc)
	if err != nil {
		if errors.Is(err, ErrAuthentication) || ctx.Err() != nil {
			return nil, err
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	sctx, cancel := context.WithCancel(withToken(ctx, tok))
	cs, err := streamer(sctx, desc, cc, method, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	return &authStream{ClientStream: cs, auth: a, token: tok, at: at, cancel: cancel}, nil
}

// authStream is a stream opened with token, had at at.
type authStream struct {
	grpc.ClientStream
	auth   *tokenAuth
	token  string
	at     time.Time
	cancel context.CancelFunc // ends the stream
}

// RecvMsg passes messages on, except a watch etcd refused because of the
// stream's token: then the stream ends with Unavailable, and clientv3's
// watcher opens another (with a fresh token) and creates its watches
// there again. etcd 3.5 and later say "invalid auth token"; 3.4 says
// "permission denied", as for a user without the right, which is why a
// token younger than tokenSuspect is not suspected: the refusal is then
// passed on, and the watch's owner reports it.
func (s *authStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.cancel()
		return err
	}
	w, ok := m.(*pb.WatchResponse)
	if !ok || !w.Canceled || time.Since(s.at) < tokenSuspect {
		return nil
	}
	reason := w.CancelReason
	if !strings.Contains(reason, rpctypes.ErrInvalidAuthToken.Error()) && !strings.Contains(reason, rpctypes.ErrPermissionDenied.Error()) {
		return nil
	}
	s.auth.invalidate(s.token)
	s.cancel()
	return status.Error(codes.Unavailable, "etcd refused a watch for this stream's auth token, which may have expired; opening a new stream")
}
