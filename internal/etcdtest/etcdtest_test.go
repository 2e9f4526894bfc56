package etcdtest

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestRestartKeepsDataAndPort(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	resp, err := c.Get(ctx, "k") // the same client reconnects to the same port
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v", resp.Kvs)
	}
}

func TestProxyCutAndHeal(t *testing.T) {
	s := Start(t)
	p := NewProxy(t, s.Addr())
	c := NewClient(t, p.Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := c.Put(short, "k", "2")
	cancelShort()
	if err == nil {
		t.Fatal("write went through a cut proxy")
	}
	p.Heal()
	if _, err := c.Put(ctx, "k", "3"); err != nil {
		t.Fatalf("after heal: %v", err)
	}
	resp, err := s.Client(t).Get(ctx, "k")
	if err != nil || string(resp.Kvs[0].Value) != "3" {
		t.Fatalf("server holds %v, %v", resp.Kvs, err)
	}
}

// fakeT records a harness's failure and runs its cleanups, for testing the
// harness's own failure paths.
type fakeT struct {
	dir      string
	failed   string
	cleanups []func()
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Cleanup(c func())               { f.cleanups = append(f.cleanups, c) }
func (f *fakeT) Errorf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }
func (f *fakeT) Fatalf(format string, a ...any) {
	f.failed = fmt.Sprintf(format, a...)
	runtime.Goexit()
}
func (f *fakeT) Fatal(a ...any)  { f.failed = fmt.Sprint(a...); runtime.Goexit() }
func (f *fakeT) Skip(a ...any)   { runtime.Goexit() }
func (f *fakeT) TempDir() string { return f.dir }

// An external etcd that exits at once fails the start, with its output,
// and the teardown does not wait for an exit already seen.
func TestProcessExitingAtStart(t *testing.T) {
	t.Setenv(BinaryEnv, "/bin/false")
	f := &fakeT{dir: t.TempDir()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
	}()
	<-done
	if !strings.Contains(f.failed, "exited") {
		t.Errorf("start failure %q, want the exit reported", f.failed)
	}
	cleaned := make(chan struct{})
	go func() {
		for i := len(f.cleanups) - 1; i >= 0; i-- {
			f.cleanups[i]()
		}
		close(cleaned)
	}()
	select {
	case <-cleaned:
	case <-time.After(10 * time.Second):
		t.Fatal("the teardown hangs waiting for a process that already exited")
	}
}

// TestStartOnTakenPort: a port taken between freeAddr and the bind (by a
// parallel test, say) costs a start on fresh ports, not a failed test;
// clients reach the server at the same front address.
func TestStartOnTakenPort(t *testing.T) {
	s := newMember(t, "taken")
	s.cluster = s.name + "=" + s.peerURL.String()
	l, err := net.Listen("tcp", s.clientURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	front := s.Addr()
	startAlone(t, s)
	if s.clientURL.Host == l.Addr().String() || s.Addr() != front {
		t.Fatalf("client URL %s, front %s (was %s)", s.clientURL.Host, s.Addr(), front)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Client(t).Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
}

// TestStartProcess runs the embedded server as a process of its own, as
// scale benchmarks do, and reads and writes through it.
func TestStartProcess(t *testing.T) {
	s := StartProcess(t, EmbeddedBinary(t))
	if s.Pid() == 0 {
		t.Fatal("no process")
	}
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if resp, err := c.Get(ctx, "k"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("after a restart of the process: %v, %v", resp, err)
	}
}

// TestBackupRestore: every backup kind the server can take restores the
// store as it was, at the revision it had, on the same address.
func TestBackupRestore(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, kind := range []BackupKind{ColdCopy, EtcdctlSnapshot, ClientSnapshot} {
		if !s.CanBackup(kind) {
			t.Logf("%v: not with this server", kind)
			continue
		}
		put, err := c.Put(ctx, "k", kind.String())
		if err != nil {
			t.Fatal(err)
		}
		b := s.Backup(kind)
		if _, err := c.Put(ctx, "k", "after"); err != nil {
			t.Fatal(err)
		}
		s.Restore(b, nil)
		resp, err := c.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != kind.String() || resp.Kvs[0].ModRevision != put.Header.Revision {
			t.Errorf("%v: restored %v, want %q at revision %d", kind, resp.Kvs, kind.String(), put.Header.Revision)
		}
	}
}
