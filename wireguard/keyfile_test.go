package wireguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyFile: a key is made once, 0600, and read back the same; flannel's
// WIREGUARD_KEY_FILE moves it; a file holding no key is an error naming
// the file, never silently replaced; RotateKey is the only way to a new
// key.
func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(KeyFileEnv, "")
	os.Unsetenv(KeyFileEnv)
	path := KeyFile(filepath.Join(dir, "state"))
	if path != filepath.Join(dir, "state", KeyFileName) {
		t.Fatalf("KeyFile = %s", path)
	}
	k, created, err := LoadOrCreateKey(path)
	if err != nil || !created || k.IsZero() {
		t.Fatalf("first load: %v %v %v", k, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	again, created, err := LoadOrCreateKey(path)
	if err != nil || created || again != k {
		t.Fatalf("second load: same %v, created %v, %v", again == k, created, err)
	}
	// wg genkey's output, as flannel and operators write it, and a file
	// left readable by others, which is tightened.
	os.WriteFile(path, []byte("  "+k.String()+"\n\n"), 0o644)
	if again, _, err := LoadOrCreateKey(path); err != nil || again != k {
		t.Fatalf("wg-style file: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after load, want 0600", fi.Mode())
	}

	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a file with no key: %v; want an error naming it", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage" {
		t.Fatal("a file with no key was replaced")
	}

	rotated, err := RotateKey(path)
	if err != nil || rotated == k {
		t.Fatalf("RotateKey: %v", err)
	}
	if again, _, _ := LoadOrCreateKey(path); again != rotated {
		t.Fatal("the rotated key is not the one loaded")
	}

	t.Setenv(KeyFileEnv, "/run/flannel/wgkey")
	if got := KeyFile(dir); got != "/run/flannel/wgkey" {
		t.Fatalf("KeyFile with %s set = %s", KeyFileEnv, got)
	}
}
