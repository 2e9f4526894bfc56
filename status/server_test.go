//go:build linux

package status

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/testutil"
)

// testServer serves /healthz and /big (bigSize bytes) within lim on
// loopback; wrote gets each /big handler's write error.
func testServer(t *testing.T, lim Limits, bigSize int) (s *Server, addr string, wrote chan error) {
	t.Helper()
	wrote = make(chan error, 64)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		_, err := w.Write(make([]byte, bigSize))
		select {
		case wrote <- err:
		default:
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s = NewServer(mux, lim, nil)
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return s, l.Addr().String(), wrote
}

// dialSmall dials addr with a receive buffer as small as the kernel
// allows: a client that reads nothing takes little of what is sent.
func dialSmall(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1) })
		return err
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kubeletProbe is kubelet's liveness probe: a new connection, one GET, closed.
func kubeletProbe(addr string) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		return fmt.Errorf("%s %q %v", resp.Status, body, err)
	}
	return nil
}

// TestServerCapAnswersProbes drives random histories of clients that hold
// connections (keep-alive clients between requests, clients that send
// nothing or half a header, clients that never read a big answer) and
// closes. After every step the server holds at most its cap, and a new
// client, as kubelet's probe, is answered, while a burst of clients that
// send nothing or half a header connects past the cap.
func TestServerCapAnswersProbes(t *testing.T) {
	const maxConns = 8
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	s, addr, _ := testServer(t, Limits{MaxConns: maxConns, WriteTimeout: time.Hour, IdleTimeout: time.Hour, ReadHeaderTimeout: time.Hour, ReadTimeout: time.Hour}, 8<<20)
	var open []net.Conn
	for step := range 120 {
		var what string
		switch k := r.IntN(5); {
		case k == 0 && len(open) > 0:
			i := r.IntN(len(open))
			open[i].Close()
			open = append(open[:i], open[i+1:]...)
			what = "close one"
		case k <= 1:
			c := dialSmall(t, addr)
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				io.Copy(io.Discard, resp.Body)
			}
			open = append(open, c)
			what = "idle after an answer"
		case k == 2:
			open = append(open, dialSmall(t, addr))
			what = "silent"
		case k == 3:
			c := dialSmall(t, addr)
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHo")
			open = append(open, c)
			what = "half a header"
		default:
			c := dialSmall(t, addr)
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			open = append(open, c)
			what = "an unread big answer"
		}
		// The probe races a burst of clients past the cap, silent or
		// dribbling a header.
		burst := make(chan []net.Conn)
		go func() {
			var cs []net.Conn
			for i := range maxConns / 2 {
				if c, err := net.Dial("tcp", addr); err == nil {
					if i%2 == 0 {
						io.WriteString(c, "GET /healthz HTTP/1.1\r\nHo")
					}
					cs = append(cs, c)
				}
			}
			burst <- cs
		}()
		err := kubeletProbe(addr)
		for _, c := range <-burst {
			c.Close()
		}
		if err != nil {
			t.Fatalf("step %d (%s, %d client connections): the probe failed: %v", step, what, len(open), err)
		}
		if n := s.Conns(); n > maxConns {
			t.Fatalf("step %d (%s): %d connections held, cap %d", step, what, n, maxConns)
		}
	}
}

// TestServerDropsUnreadAnswers: an answer its client does not read is
// dropped at the write deadline: the handler's write fails, the
// connection is let go, and what the kernel still held for it is
// dropped too (the client is reset, not left a closed socket's queue).
func TestServerDropsUnreadAnswers(t *testing.T) {
	s, addr, wrote := testServer(t, Limits{WriteTimeout: 200 * time.Millisecond}, 16<<20)
	c := dialSmall(t, addr)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := <-wrote; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writing an answer nobody reads: %v, want a deadline error", err)
	}
	testutil.WaitFor(t, 10*time.Second, "the connection to be let go", func() bool { return s.Conns() == 0 })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the client of a dropped answer read to %v, want a reset", err)
	}
}

// TestServerTimeouts: a connection idle after its answer, one that sends
// nothing, and one that sends half a header are each closed; a header
// past MaxHeaderBytes is refused.
func TestServerTimeouts(t *testing.T) {
	lim := Limits{IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: 100 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, MaxHeaderBytes: 1024}
	s, addr, _ := testServer(t, lim, 1)
	closed := func(c net.Conn, what string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("%s: not closed by the server: %v", what, err)
		}
	}
	idle := dialSmall(t, addr)
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	closed(idle, "idle after an answer")
	closed(dialSmall(t, addr), "silent")
	half := dialSmall(t, addr)
	io.WriteString(half, "GET /healthz HTTP/1.1\r\nHo")
	closed(half, "half a header")

	big := dialSmall(t, addr)
	fmt.Fprintf(big, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", strings.Repeat("a", 8<<10))
	big.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("an 8 KiB header past a 1 KiB limit: %v, %v", resp, err)
	}
	testutil.WaitFor(t, 10*time.Second, "every connection let go", func() bool { return s.Conns() == 0 })
}
