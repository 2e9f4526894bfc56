package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	v := &statusView{ready: func() (bool, string) { return false, "waiting for the network config" }}
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

	// A file at the path is never removed.
	file := filepath.Join(dir, "precious")
	os.WriteFile(file, []byte("keep"), 0o644)
	serveStatusSocket(file, v, log)()
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("a file at --status-socket was touched: %q, %v", b, err)
	}
}
