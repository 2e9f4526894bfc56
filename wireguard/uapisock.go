//go:build linux

package wireguard

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.zx2c4.com/wireguard/device"
)

// DefaultUAPIDir is where wireguard-go, and so `wg`, keep the
// configuration sockets of user-space devices.
const DefaultUAPIDir = "/var/run/wireguard"

// uapiSocket serves a user-space device's configuration socket,
// <dir>/<name>.sock, so that `wg show flannel-wg` works as it does for a
// kernel device. The datapath does not use it: it configures the device
// in-process.
type uapiSocket struct {
	path  string
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// serveUAPI listens on dir/name.sock (mode 0600; a stale socket of a
// process gone is replaced) and serves dev's configuration protocol.
func serveUAPI(dir, name string, dev *device.Device) (*uapiSocket, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wireguard: socket directory: %w", err)
	}
	path := filepath.Join(dir, name+".sock")
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("wireguard: %s is served by another process; one device of a name per host", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("wireguard: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("wireguard: %s: %w", path, err)
	}
	s := &uapiSocket{path: path, ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					continue
				}
				return
			}
			s.mu.Lock()
			if s.conns == nil {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = true
			s.wg.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				dev.IpcHandle(c) // closes c when the client is done
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s, nil
}

// close stops serving, ends every connection, waits for their goroutines
// and removes the socket.
func (s *uapiSocket) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
	os.Remove(s.path)
}
