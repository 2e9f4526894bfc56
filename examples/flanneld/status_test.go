package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/daemontest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/status"
)

// TestStatusSocket: the socket is 0600 and serves a not-ready Document
// before the Network exists; a stale socket is replaced, a live one left
// to its daemon, and a path that is not a socket is never removed.
func TestStatusSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "weft.sock")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	v := newStatusView(func() (bool, string) { return false, "waiting for the network config" })
	stop := serveStatusSocket(path, v, log)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want a socket, mode 0600", fi, err)
	}
	c, err := status.NewClient(path, "")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := c.Status(context.Background(), status.Query{})
	if err != nil || doc.Ready || doc.Reason != "waiting for the network config" {
		t.Fatalf("status before the Network: %+v, %v", doc, err)
	}
	// A second daemon leaves the live socket alone.
	if stop2 := serveStatusSocket(path, v, log); !strings.Contains(logs.String(), "another process serves it") {
		t.Errorf("a second server did not stand back:\n%s", logs.String())
	} else {
		stop2()
	}
	if _, err := c.Status(context.Background(), status.Query{}); err != nil {
		t.Errorf("the first socket stopped serving: %v", err)
	}
	stop()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after stop: %v", err)
	}

	// A stale socket, as a killed daemon leaves it, is replaced.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	stop = serveStatusSocket(path, v, log)
	if _, err := c.Status(context.Background(), status.Query{}); err != nil {
		t.Errorf("the stale socket was not replaced: %v", err)
	}
	stop()

	// A daemon whose socket was replaced by a newer one's leaves it.
	stop = serveStatusSocket(path, v, log)
	os.Remove(path)
	newer, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Close()
	stop()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("stopping removed the newer daemon's socket: %v", err)
	}
	newer.Close()

	// A file at the path is never removed.
	file := filepath.Join(dir, "precious")
	os.WriteFile(file, []byte("keep"), 0o644)
	serveStatusSocket(file, v, log)()
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("a file at --status-socket was touched: %q, %v", b, err)
	}
}

// TestStatusSocketRefusesOtherUsers: even with the socket's mode opened
// (as between Listen and Chmod), a connection from another user is
// closed unanswered.
func TestStatusSocketRefusesOtherUsers(t *testing.T) {
	netnstest.RequirePrivileged(t) // root, to run a client as another user
	ctl := daemontest.Build(t, "./examples/weftctl")
	dir, err := os.MkdirTemp("", "weft-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chmod(ctl, 0o755)
	os.Chmod(filepath.Dir(ctl), 0o755)
	path := filepath.Join(dir, "s.sock")
	v := newStatusView(func() (bool, string) { return true, "" })
	stop := serveStatusSocket(path, v, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer stop()
	os.Chmod(path, 0o666)
	run := func(uid uint32) (string, int) {
		cmd := exec.Command(ctl, "--socket", path, "status", "-o", "json")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run(0); code != 0 {
		t.Fatalf("root: exit %d\n%s", code, out)
	}
	if out, code := run(65534); code != 3 || strings.Contains(out, `"ready"`) {
		t.Errorf("another user: exit %d, want 3 (refused)\n%s", code, out)
	}
}

// TestStatusSocketUnderHealthFlood: clients flooding the health port's
// /status (open to any pod) take none of the socket's capacity: every
// one of root's queries over the socket meanwhile is answered.
func TestStatusSocketUnderHealthFlood(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, benchConf)
	fillLeases(t, c, 2000) // a Document that takes a while to build
	d := c.start(c.host(1))
	waitFor(t, time.Minute, "convergence", func() bool { code, _ := d.Readyz(); return code == http.StatusOK })
	client, err := status.NewClient(socketOf(d), "")
	if err != nil {
		t.Fatal(err)
	}
	// The health port cuts its pages at 500 peers and says where the
	// next begins; the socket answers as asked.
	code, body := d.Get("/status?limit=5000")
	var page status.Document
	if err := json.Unmarshal([]byte(body), &page); code != http.StatusOK || err != nil || len(page.Peers) != status.DefaultLimit || page.Next == "" {
		t.Errorf("health port /status?limit=5000 with 2,000 peers: %d, %d peers, next %q, %v", code, len(page.Peers), page.Next, err)
	}
	if doc, err := client.Status(t.Context(), status.Query{Limit: 5000}); err != nil || len(doc.Peers) != 2000 {
		t.Errorf("socket /status?limit=5000: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var floods, busy atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, _ := d.Get("/status?limit=5000")
				floods.Add(1)
				if code == http.StatusServiceUnavailable {
					busy.Add(1)
				}
			}
		})
	}
	// The flood is on before the first query.
	waitFor(t, 30*time.Second, "the health port to answer busy", func() bool { return busy.Load() > 0 })
	var refused []string
	for i := range 40 {
		if _, err := client.Status(t.Context(), status.Query{Limit: 5000}); err != nil {
			refused = append(refused, fmt.Sprintf("query %d: %v", i, err))
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("health port: %d requests, %d told busy", floods.Load(), busy.Load())
	if len(refused) > 0 {
		t.Errorf("%d of 40 socket queries failed while the health port was flooded:\n%s", len(refused), strings.Join(refused, "\n"))
	}
}
