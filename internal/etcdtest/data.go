package etcdtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Wipe stops the server, moves its data away and starts an empty one on
// the same address, as an operator who lost or discarded the data
// directory would: clients see the server die and come back with no keys
// and its revision starting over.
func (s *Server) Wipe() { s.WipeWith(nil) }

// WipeWith is Wipe, calling setup, if not nil, with the new server's own
// client URL before clients can reach it again: what happens in the
// window after a wipe (the config put back, a node joining) happens
// before any agent is back.
func (s *Server) WipeWith(setup func(endpoint string)) {
	s.t.Helper()
	s.replaceData("wipe", nil, setup)
}

// replaceData stops the server, moves its data directory aside, lets fill
// (if not nil) write the new one, and starts the server on the same
// address, calling setup with its client URL before clients can reach it
// again. what names the operation in a failure.
func (s *Server) replaceData(what string, fill func(data string) error, setup func(endpoint string)) {
	s.t.Helper()
	s.Stop()
	data := filepath.Join(s.dir, "data")
	if err := os.Rename(data, data+"."+what+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)); err != nil {
		s.t.Fatalf("etcdtest: %s: %v", what, err)
	}
	if fill != nil {
		if err := fill(data); err != nil {
			s.t.Fatalf("etcdtest: %s: %v", what, err)
		}
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: start after a %s: %v", what, err)
	}
	if setup != nil {
		setup(s.clientURL.Scheme + "://" + s.clientURL.Host)
	}
	if s.front != nil {
		s.front.Heal()
	}
}

// Etcdctl returns the etcdctl beside an external server's binary, or ""
// if the server is embedded or the tool is not installed (Debian ships it
// in etcd-client).
func (s *Server) Etcdctl() string {
	if s.binary == "" {
		return ""
	}
	path := filepath.Join(filepath.Dir(s.binary), "etcdctl")
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// Snapshot saves the server's store with etcdctl snapshot save, as an
// operator backs it up, and returns the file. The server must be external
// and have an etcdctl (see Etcdctl).
func (s *Server) Snapshot() string {
	s.t.Helper()
	file := filepath.Join(s.dir, "snapshot-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".db")
	s.etcdctl("--endpoints", s.clientURL.String(), "snapshot", "save", file)
	return file
}

// RestoreWith stops the server, moves its data away, restores snapshot
// into a fresh data directory with etcdctl snapshot restore, and starts the
// server on it, on the same address: an operator restoring a backup. The
// restored store's revision is the snapshot's, below what clients had
// seen. setup runs as for WipeWith, before clients can reach the server.
func (s *Server) RestoreWith(snapshot string, setup func(endpoint string)) {
	s.t.Helper()
	s.replaceData("restore", func(data string) error {
		s.etcdctl("snapshot", "restore", snapshot, "--data-dir", data, "--name", s.name,
			"--initial-cluster", s.cluster, "--initial-advertise-peer-urls", s.peerURL.String())
		return nil
	}, setup)
}

func (s *Server) etcdctl(args ...string) {
	s.t.Helper()
	tool := s.Etcdctl()
	if tool == "" || s.tls != nil {
		s.t.Fatalf("etcdtest: etcdctl needs an external, plain-HTTP server with etcdctl beside its binary")
	}
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("etcdtest: etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
