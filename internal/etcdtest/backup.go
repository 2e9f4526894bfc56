package etcdtest

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A BackupKind is how an operator backs etcd up.
type BackupKind int

const (
	// ColdCopy stops the server, copies its data directory and starts it
	// again (clients see it restart): a disk or VM snapshot. Any server.
	ColdCopy BackupKind = iota
	// EtcdctlSnapshot is etcdctl snapshot save, while the server runs. An
	// external server with etcdctl beside it (see Etcdctl).
	EtcdctlSnapshot
	// ClientSnapshot saves the client's Snapshot API stream, while the
	// server runs (what etcdctl snapshot save writes, through this
	// module's client). Restored with etcdctl, so an external server
	// with etcdctl beside it.
	ClientSnapshot
)

func (k BackupKind) String() string {
	switch k {
	case ColdCopy:
		return "cold copy of the data directory"
	case EtcdctlSnapshot:
		return "etcdctl snapshot save"
	case ClientSnapshot:
		return "client Snapshot API"
	}
	return "backup kind " + strconv.Itoa(int(k))
}

// A Backup is a server's store as Backup saved it, for Restore.
type Backup struct {
	Kind BackupKind
	path string // a snapshot file, or a copy of the data directory
}

// CanBackup reports whether the server can take (and restore) backups of
// kind k.
func (s *Server) CanBackup(k BackupKind) bool {
	switch k {
	case ColdCopy:
		return s.in == nil && s.tls == nil
	case EtcdctlSnapshot, ClientSnapshot:
		return s.Etcdctl() != "" && s.tls == nil
	}
	return false
}

// Backup saves the server's store as kind k does (see BackupKind). The
// files live in the test's directory, removed with it.
func (s *Server) Backup(k BackupKind) Backup {
	s.t.Helper()
	if !s.CanBackup(k) {
		s.t.Fatalf("etcdtest: this server cannot take a %v", k)
	}
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	switch k {
	case EtcdctlSnapshot:
		return Backup{Kind: k, path: s.Snapshot()}
	case ClientSnapshot:
		file := filepath.Join(s.dir, "snapshot-api-"+stamp+".db")
		if err := s.saveSnapshot(file); err != nil {
			s.t.Fatalf("etcdtest: snapshot through the client: %v", err)
		}
		return Backup{Kind: k, path: file}
	}
	copyDir := filepath.Join(s.dir, "backup-"+stamp)
	s.Stop()
	err := copyTree(filepath.Join(s.dir, "data"), copyDir)
	if serr := s.start(); serr != nil {
		s.t.Fatalf("etcdtest: start after a backup: %v", serr)
	}
	if s.front != nil {
		s.front.Heal()
	}
	if err != nil {
		s.t.Fatalf("etcdtest: copy the data directory: %v", err)
	}
	return Backup{Kind: k, path: copyDir}
}

// saveSnapshot writes the server's Snapshot API stream to file.
func (s *Server) saveSnapshot(file string) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.clientURL.String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Snapshot(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Restore stops the server, moves its data away, puts b in its place and
// starts the server on the same address: an operator restoring a backup.
// The restored store's revision is the backup's, below what clients had
// seen. setup runs as for WipeWith, before clients can reach the server.
func (s *Server) Restore(b Backup, setup func(endpoint string)) {
	s.t.Helper()
	if b.Kind != ColdCopy {
		s.RestoreWith(b.path, setup)
		return
	}
	s.replaceData("restore", func(data string) error {
		if err := copyTree(b.path, data); err != nil {
			return fmt.Errorf("%s: %w", b.path, err)
		}
		return nil
	}, setup)
}

// copyTree copies the directory from to a new directory to, files and
// modes.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, info.Mode().Perm())
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s: not a regular file", p)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
