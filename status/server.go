//go:build linux

package status

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what the clients of one Server can hold. A zero field
// takes its default.
type Limits struct {
	// MaxConns is how many connections the Server holds at once
	// (default 256, about 5 MiB of a Go server's buffers and stacks).
	// Past it, each new connection is taken and another closed: the one
	// idle longest after an answer, else the oldest. A connection is
	// never left waiting in the kernel's accept queue: a health probe (a
	// new connection each time) behind idle clients would time out, and
	// the probe's failure would have the agent killed.
	MaxConns int
	// ReadHeaderTimeout bounds reading a request's header (default 5s);
	// ReadTimeout the whole request (default 10s: nothing served has a
	// body); WriteTimeout the handler and its answer (default 10s), so
	// that an answer nobody reads is dropped; IdleTimeout a connection
	// between requests (default 30s).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header (default 8 KiB; net/http's
	// own is 1 MiB, held per connection while it is read).
	MaxHeaderBytes int
}

// Defaults of Limits.
const (
	DefaultMaxConns       = 256
	DefaultMaxHeaderBytes = 8 << 10
)

func (l Limits) withDefaults() Limits {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&l.ReadHeaderTimeout, 5*time.Second)
	set(&l.ReadTimeout, 10*time.Second)
	set(&l.WriteTimeout, 10*time.Second)
	set(&l.IdleTimeout, 30*time.Second)
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return l
}

// A Server is an http.Server whose clients hold bounded memory, for a
// port any pod can reach (flanneld's health port) or a local socket:
// see Limits. Serve it on one listener; it is safe for concurrent use.
type Server struct {
	srv *http.Server
	lim Limits
	log *slog.Logger

	mu      sync.Mutex
	conns   map[*heldConn]struct{}
	evicted int       // connections closed for others since lastLog
	lastLog time.Time // of the last "at its cap" line
}

// NewServer returns a Server of h within lim, logging to log (nil: no
// logging) when its cap is reached, at most once a minute.
func NewServer(h http.Handler, lim Limits, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{lim: lim.withDefaults(), log: log, conns: map[*heldConn]struct{}{}}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.lim.ReadHeaderTimeout,
		ReadTimeout:       s.lim.ReadTimeout,
		WriteTimeout:      s.lim.WriteTimeout,
		IdleTimeout:       s.lim.IdleTimeout,
		MaxHeaderBytes:    s.lim.MaxHeaderBytes,
		ConnState:         s.connState,
		// net/http logs a client's misbehaviour (a bad TLS hello, an
		// accept error) line by line: clients must not fill the log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s
}

// Serve accepts connections on l until Close or Shutdown; it returns
// http.ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(capped{l, s}) }

// Shutdown stops accepting and waits for answers in progress until ctx
// is done, then closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.dropAll()
	return err
}

// Close closes the listener and every connection now.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.dropAll()
	return err
}

// dropAll drops the connections still held once net/http has let them
// go: those whose answer was draining (see heldConn.Close).
func (s *Server) dropAll() {
	s.mu.Lock()
	held := make([]*heldConn, 0, len(s.conns))
	for c := range s.conns {
		held = append(held, c)
		delete(s.conns, c)
	}
	s.mu.Unlock()
	for _, c := range held {
		c.drop()
	}
}

// Conns is how many connections the Server holds now.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// connState follows each connection: idle once an answer is written and
// until its next request is read (net/http's StateIdle to StateActive),
// so that the cap never takes an answer half-sent as an idle client.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	h, ok := c.(*heldConn)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateActive:
		h.idle = false
	case http.StateIdle:
		h.idle, h.since = true, time.Now()
	}
}

// capped is the Server's listener: it admits every connection and, past
// the cap, closes another.
type capped struct {
	net.Listener
	s *Server
}

func (l capped) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	h := &heldConn{Conn: c, s: l.s, accepted: time.Now()}
	s := l.s
	s.mu.Lock()
	s.conns[h] = struct{}{}
	var victim *heldConn
	if len(s.conns) > s.lim.MaxConns {
		// Out of the count at once: closing it, outside the lock,
		// follows.
		victim = s.victimLocked(h)
		delete(s.conns, victim)
		s.evicted++
	}
	logNow := victim != nil && time.Since(s.lastLog) >= time.Minute
	n := s.evicted
	if logNow {
		s.lastLog, s.evicted = time.Now(), 0
	}
	s.mu.Unlock()
	if victim != nil {
		victim.drop()
	}
	if logNow {
		s.log.Warn("a server is at its connection cap: idle connections are closed for new ones; is a client flooding it?",
			"addr", l.Addr().String(), "cap", s.lim.MaxConns, "closed", n)
	}
	return h, nil
}

// victimLocked picks the connection to close for the new one: the one
// idle longest after an answer (a keep-alive client has had what it came
// for), else the oldest: a client that sends nothing, dribbles a header
// or does not read its answer grows old. A client such as kubelet's
// probe, which sends its request with the connection, is then taken only
// if more than MaxConns others come in, with no idle one among them,
// before its answer is written.
func (s *Server) victimLocked(newest *heldConn) *heldConn {
	var idle, oldest *heldConn
	for c := range s.conns {
		switch {
		case c == newest:
		case c.idle:
			if idle == nil || c.since.Before(idle.since) {
				idle = c
			}
		case oldest == nil || c.accepted.Before(oldest.accepted):
			oldest = c
		}
	}
	switch {
	case idle != nil:
		return idle
	case oldest != nil:
		return oldest
	}
	return newest
}

// A heldConn is a connection the Server counts, from Accept to Close.
type heldConn struct {
	net.Conn
	s        *Server
	accepted time.Time
	// Under s.mu: between an answer and the next request; since when.
	idle  bool
	since time.Time
	once  sync.Once
	// failed is set once a write failed (its deadline passed): the
	// answer was not all handed to the kernel.
	failed atomic.Bool
}

// A draining connection looks at what its client has not acknowledged
// yet after drainPoll, then twice as long each time up to drainPollMax:
// a client that reads is let go within a few polls, and the cap's worth of
// clients that do not costs a few hundred reads a second.
const (
	drainPoll    = 10 * time.Millisecond
	drainPollMax = 500 * time.Millisecond
)

func (c *heldConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// Close lets the connection go. An answer handed whole to the kernel and
// not yet acknowledged (net/http closes a "Connection: close" connection
// right after writing) is the one the client is reading: the connection
// sends its end (FIN) and stays held, idle, until the client has it all,
// or until WriteTimeout passes, or the cap needs its place. Then, and for
// an answer cut by its write deadline, what the kernel still holds is
// dropped (a reset) rather than left to a closed socket that keeps it
// until the client reads or times out.
func (c *heldConn) Close() error {
	var err error
	c.once.Do(func() {
		if !c.failed.Load() && unsent(c.Conn) > 0 {
			if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				c.s.mu.Lock()
				_, held := c.s.conns[c]
				c.idle, c.since = true, time.Now()
				c.s.mu.Unlock()
				if held {
					go c.drain(time.Now().Add(c.s.lim.WriteTimeout))
					return
				}
			}
		}
		err = c.release()
	})
	return err
}

// release forgets c and closes it, reset if the client has not taken
// everything sent, so that the kernel drops the unread answer too.
func (c *heldConn) release() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	if unsent(c.Conn) > 0 {
		resetOnClose(c.Conn)
	}
	return c.Conn.Close()
}

// drain waits until the client has acknowledged the answer, or deadline
// passes, or the connection is dropped, and then lets it go.
func (c *heldConn) drain(deadline time.Time) {
	for wait := drainPoll; ; wait = min(2*wait, drainPollMax) {
		time.Sleep(min(wait, max(time.Until(deadline), 0)+time.Millisecond))
		c.s.mu.Lock()
		_, held := c.s.conns[c]
		c.s.mu.Unlock()
		if !held {
			return // dropped for another, or by Close
		}
		if unsent(c.Conn) == 0 || time.Now().After(deadline) {
			break
		}
	}
	c.release()
}

// drop closes the connection for another: whatever it was being sent is
// dropped.
func (c *heldConn) drop() {
	resetOnClose(c.Conn)
	c.Close()
	c.Conn.Close() // a draining one, which Close has already let go
}
