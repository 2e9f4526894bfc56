package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const conflist = "../weft-ipam/10-flannel.conflist"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup makes a node's CNI directories and a plugin binary to install.
func setup(t *testing.T) (options, string) {
	t.Helper()
	root := t.TempDir()
	o := options{binDir: filepath.Join(root, "bin"), confDir: filepath.Join(root, "net.d"), conf: conflist, confName: "10-flannel.conflist",
		plugins: []string{filepath.Join(root, "weft-ipam")}}
	for _, d := range []string{o.binDir, o.confDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(o.plugins[0], []byte("\x7fELF plugin v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	return o, root
}

// TestInstall: the plugin and the config land where the runtime looks,
// with their modes, and nothing else is left in the directories.
func TestInstall(t *testing.T) {
	o, _ := setup(t)
	if err := install(o, quiet()); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(conflist)
	for path, wantData := range map[string]string{
		filepath.Join(o.binDir, "weft-ipam"):            "\x7fELF plugin v1",
		filepath.Join(o.confDir, "10-flannel.conflist"): string(want),
	} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != wantData {
			t.Errorf("%s: %q, %v", path, got, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(o.binDir, "weft-ipam")); st.Mode().Perm() != 0o755 {
		t.Errorf("plugin mode %v, want 0755", st.Mode())
	}
	if st, _ := os.Stat(filepath.Join(o.confDir, "10-flannel.conflist")); st.Mode().Perm() != 0o644 {
		t.Errorf("config mode %v, want 0644", st.Mode())
	}
	for _, d := range []string{o.binDir, o.confDir} {
		entries, _ := os.ReadDir(d)
		if len(entries) != 1 {
			t.Errorf("%s holds %d entries, want 1 (no temporary files left)", d, len(entries))
		}
	}
}

// TestInstallAgain: a second run over an installed node changes nothing
// (the same inode: not rewritten); a newer plugin replaces the old by
// rename, so a process executing the old one keeps its file.
func TestInstallAgain(t *testing.T) {
	o, _ := setup(t)
	if err := install(o, quiet()); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(o.binDir, "weft-ipam")
	before, _ := os.Stat(dst)
	if err := install(o, quiet()); err != nil {
		t.Fatal(err)
	}
	again, _ := os.Stat(dst)
	if !os.SameFile(before, again) {
		t.Error("an unchanged plugin was rewritten")
	}
	running, err := os.Open(dst) // as a plugin being executed holds it
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	if err := os.WriteFile(o.plugins[0], []byte("\x7fELF plugin v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := install(o, quiet()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "\x7fELF plugin v2" {
		t.Errorf("after an upgrade the plugin is %q", got)
	}
	old, _ := io.ReadAll(running)
	if string(old) != "\x7fELF plugin v1" {
		t.Errorf("the running plugin's file changed under it: %q", old)
	}
}

// TestInstallRefusesBadConfig: a config that is no conflist installs
// nothing, and the error names the file and the fault.
func TestInstallRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct{ name, conf, want string }{
		{"not JSON", `{"name": "cbr0",`, "not a CNI network configuration list"},
		{"a single network", `{"cniVersion": "1.0.0", "name": "cbr0", "type": "flannel"}`, `no "plugins"`},
		{"no name", `{"plugins": [{"type": "flannel"}]}`, `no "name"`},
		{"a plugin without a type", `{"name": "cbr0", "plugins": [{"type": "flannel"}, {"ipam": {}}]}`, `plugins[1] has no "type"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, root := setup(t)
			o.conf = filepath.Join(root, "cni-conf.json")
			if err := os.WriteFile(o.conf, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			err := install(o, quiet())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), o.conf) {
				t.Fatalf("error %v; want one naming %s and %q", err, o.conf, tc.want)
			}
			for _, d := range []string{o.binDir, o.confDir} {
				if entries, _ := os.ReadDir(d); len(entries) != 0 {
					t.Errorf("%s: %d entries written", d, len(entries))
				}
			}
		})
	}
	o, _ := setup(t)
	o.confName = "../escape.conflist"
	if err := install(o, quiet()); err == nil {
		t.Error("a --conf-name with a directory was taken")
	}
	// A second plugin missing, or two of one name: nothing written.
	for name, extra := range map[string]string{"missing plugin": "/nonexistent/weft-other", "same name": ""} {
		o, root := setup(t)
		if extra == "" {
			extra = filepath.Join(root, "again", "weft-ipam")
			os.MkdirAll(filepath.Dir(extra), 0o755)
			os.WriteFile(extra, []byte("other"), 0o755)
		}
		o.plugins = append(o.plugins, extra)
		if err := install(o, quiet()); err == nil {
			t.Errorf("%s: installed", name)
		}
		for _, d := range []string{o.binDir, o.confDir} {
			if entries, _ := os.ReadDir(d); len(entries) != 0 {
				t.Errorf("%s: %s holds %d entries", name, d, len(entries))
			}
		}
	}
}

// TestInstallMakesDirectories: on a node that never ran a CNI plugin the
// directories are made.
func TestInstallMakesDirectories(t *testing.T) {
	o, root := setup(t)
	o.binDir, o.confDir = filepath.Join(root, "new", "bin"), filepath.Join(root, "new", "net.d")
	if err := install(o, quiet()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(o.binDir, "weft-ipam"), filepath.Join(o.confDir, "10-flannel.conflist")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

// TestDefaultPluginsCoverTheConflist: every plugin the shipped conflist
// names is installed by default from the image, or comes from elsewhere on
// the node (flannel's plugin from flannel's image, portmap with the node's
// standard plugins); and the default install writes them all.
func TestDefaultPluginsCoverTheConflist(t *testing.T) {
	raw, err := os.ReadFile(conflist)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	elsewhere := map[string]bool{"flannel": true, "portmap": true}
	installed := map[string]bool{}
	for _, p := range defaultPlugins {
		installed[filepath.Base(p)] = true
	}
	for _, p := range list.Plugins {
		if !installed[p.Type] && !elsewhere[p.Type] {
			t.Errorf("the conflist chains %q, which weft-install-cni does not install by default (%v)", p.Type, defaultPlugins)
		}
	}
	if !installed["weft-announce"] || !installed["weft-ipam"] {
		t.Errorf("default plugins %v; want weft-ipam and weft-announce", defaultPlugins)
	}
	o, root := setup(t)
	o.plugins = nil
	for _, p := range defaultPlugins {
		path := filepath.Join(root, "image", filepath.Base(p))
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte("\x7fELF "+filepath.Base(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		o.plugins = append(o.plugins, path)
	}
	if err := install(o, quiet()); err != nil {
		t.Fatal(err)
	}
	for _, p := range defaultPlugins {
		if data, err := os.ReadFile(filepath.Join(o.binDir, filepath.Base(p))); err != nil || string(data) != "\x7fELF "+filepath.Base(p) {
			t.Errorf("%s: %q, %v", filepath.Base(p), data, err)
		}
	}
}
