package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// KeyFileEnv is flannel's environment variable naming the private key's
// file; KeyFile honours it.
const KeyFileEnv = "WIREGUARD_KEY_FILE"

// KeyFileName is the key's file in the state directory.
const KeyFileName = "wireguard.key"

// KeyFile returns where the node's private key lives: $WIREGUARD_KEY_FILE
// when set (flannel's variable), else KeyFileName in stateDir (weft's
// state directory, /var/lib/weft by default). flannel's own default,
// /run/flannel/wgkey, is on a tmpfs: its key is new after every reboot,
// and every peer must learn it again from the control plane before it can
// reach the node. The state directory survives reboots, so an edge node
// rebooted while cut off keeps the key its peers know.
func KeyFile(stateDir string) string {
	if p, ok := os.LookupEnv(KeyFileEnv); ok && p != "" {
		return p
	}
	return filepath.Join(stateDir, KeyFileName)
}

// LoadOrCreateKey returns the private key in path, creating it (mode
// 0600, written atomically, its directory made 0700 if missing) when
// there is none. created says which. The file holds the key's base64 form,
// as `wg genkey` writes it and flannel reads it; surrounding white space
// is allowed. A file that holds no key is an error naming the file and the
// fix: a key is never replaced behind the operator's back, as every peer
// knows the node by it. A file readable by others is made 0600.
func LoadOrCreateKey(path string) (key Key, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k, err := GenerateKey()
		if err != nil {
			return Key{}, false, err
		}
		if err := writeKey(path, k); err != nil {
			return Key{}, false, err
		}
		return k, true, nil
	case err != nil:
		return Key{}, false, fmt.Errorf("wireguard: read key file %s: %w", path, err)
	}
	k, err := ParseKey(strings.TrimSpace(string(b)))
	if err != nil || k.IsZero() {
		return Key{}, false, fmt.Errorf("wireguard: key file %s holds no private key (%v); restore it from a backup, or remove it to generate a new key (RotateKey), which every peer then learns from this node's lease", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return Key{}, false, fmt.Errorf("wireguard: key file %s is readable by others and cannot be made 0600: %w", path, err)
		}
	}
	return k, false, nil
}

// RotateKey replaces the private key in path with a new one and returns
// it: the operator's explicit rotation. The agent must be restarted (or
// its datapath rebuilt) to use it, and publishes the new public key in its
// lease; each peer then takes the new key when it sees the lease change,
// and until then cannot reach the node.
func RotateKey(path string) (Key, error) {
	k, err := GenerateKey()
	if err != nil {
		return Key{}, err
	}
	return k, writeKey(path, k)
}

func writeKey(path string, k Key) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("wireguard: key file directory: %w", err)
	}
	if err := atomicfile.Write(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("wireguard: write key file %s: %w", path, err)
	}
	return nil
}
