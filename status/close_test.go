//go:build linux

package status

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"testing"
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
