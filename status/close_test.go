//go:build linux

package status

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testutil"
)

// TestServerConnectionCloseAnswerWhole: a client that asks with
// "Connection: close" (kubelet's probes, curl -H, HTTP/1.0 clients, a
// monitoring scraper) and reads its answer at its own pace gets all of
// it. net/http closes such a connection as soon as the answer is in the
// kernel: what is still queued or in flight then is the answer the client
// is reading, not one nobody reads, and a reset there truncates it. The
// answer is of a size /metrics or a page of /status has (256 KiB); the
// client reads it as fast as it comes, through a small receive window, as
// one at the end of a slow link does.
func TestServerConnectionCloseAnswerWhole(t *testing.T) {
	const size = 256 << 10
	_, addr, _ := testServer(t, Limits{}, size)
	for i := range 5 {
		c := dialSmall(t, addr)
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			t.Fatalf("attempt %d: %v", i, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		c.Close()
		if err != nil || n != size {
			t.Fatalf("attempt %d: read %d of %d bytes: %v", i, n, size, err)
		}
	}
}

// TestServerDrainIsBounded: a "Connection: close" answer its client does
// not read, small enough to be handed whole to the kernel, is held while
// it drains, and dropped with a reset once WriteTimeout passes.
func TestServerDrainIsBounded(t *testing.T) {
	s, addr, wrote := testServer(t, Limits{WriteTimeout: 200 * time.Millisecond}, 8<<10)
	c := dialSmall(t, addr)
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if err := <-wrote; err != nil {
		t.Fatalf("the answer was not handed whole to the kernel: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "the connection to be let go", func() bool { return s.Conns() == 0 })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the client of an answer it never read read to %v, want a reset", err)
	}
}
