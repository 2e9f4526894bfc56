// Command weft-install-cni installs weft's CNI pieces on a node, from the
// image it ships in: the DaemonSet's init container runs it with the
// host's CNI directories mounted. It needs no shell and no cp.
//
//	weft-install-cni --bin-dir /opt/cni/bin --conf-dir /etc/cni/net.d \
//	    --conf /etc/kube-flannel/cni-conf.json [--conf-name 10-flannel.conflist] \
//	    [--plugin /opt/bin/weft-ipam --plugin /opt/bin/weft-announce ...]
//
// Each plugin binary (by default /opt/bin/weft-ipam and
// /opt/bin/weft-announce, the two the shipped conflist names) is copied into
// --bin-dir under its own name, and the CNI config into --conf-dir as
// --conf-name. Every file is written to a temporary name in its directory,
// synced and renamed into place: the container runtime never reads half a
// config, and a plugin binary a running pod setup is executing is replaced,
// not overwritten ("text file busy"). A file already as it would be
// written is left alone, so that a restart of the DaemonSet's pods touches
// nothing on the node.
//
// The config and every plugin are read and checked before anything is
// written: the config must be a CNI network configuration list (an
// object with a "name" and a non-empty "plugins" array, each with a
// "type"). An error names the file and what is wrong, and nothing is
// installed. The plugins are written before the config.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// defaultPlugins are the image's CNI plugins, which the shipped conflist
// chains: weft-ipam for addresses and weft-announce after flannel's
// plugin.
var defaultPlugins = []string{"/opt/bin/weft-ipam", "/opt/bin/weft-announce"}

type options struct {
	binDir, confDir, conf, confName string
	plugins                         []string
}

func main() {
	var o options
	var plugins multiFlag
	flag.StringVar(&o.binDir, "bin-dir", "/opt/cni/bin", "the host's CNI plugin directory, as mounted")
	flag.StringVar(&o.confDir, "conf-dir", "/etc/cni/net.d", "the host's CNI config directory, as mounted")
	flag.StringVar(&o.conf, "conf", "/etc/kube-flannel/cni-conf.json", "the CNI network configuration list to install")
	flag.StringVar(&o.confName, "conf-name", "10-flannel.conflist", "the config's file name in --conf-dir")
	flag.Var(&plugins, "plugin", "a plugin binary to install (repeatable; default "+strings.Join(defaultPlugins, " and ")+")")
	flag.Parse()
	o.plugins = plugins
	if len(o.plugins) == 0 {
		o.plugins = defaultPlugins
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := install(o, log); err != nil {
		log.Error("installing the CNI plugins and config failed", "err", err)
		os.Exit(1)
	}
}

// install checks the config, then writes every plugin and the config.
func install(o options, log *slog.Logger) error {
	conf, err := os.ReadFile(o.conf)
	if err != nil {
		return err
	}
	if err := checkConfList(conf); err != nil {
		return fmt.Errorf("%s: %w", o.conf, err)
	}
	if o.confName == "" || filepath.Base(o.confName) != o.confName {
		return fmt.Errorf("--conf-name %q: want a file name, without a directory", o.confName)
	}
	// A node that never ran a CNI plugin may lack the directories.
	for _, d := range []string{o.binDir, o.confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Every plugin is read before any is written: a missing one
	// installs nothing.
	plugins := map[string][]byte{}
	for _, p := range o.plugins {
		name := filepath.Base(p)
		if _, dup := plugins[name]; dup {
			return fmt.Errorf("two --plugin files are named %s: each is installed under its own name", name)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		plugins[name] = data
	}
	// Plugins first, the config last: a runtime that sees the config
	// finds what it names.
	for _, p := range o.plugins {
		name := filepath.Base(p)
		if err := writeFile(filepath.Join(o.binDir, name), plugins[name], 0o755, log); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(o.confDir, o.confName), conf, 0o644, log)
}

// checkConfList reports what makes data no CNI network configuration list.
func checkConfList(data []byte) error {
	var list struct {
		Name    string            `json:"name"`
		Plugins []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("not a CNI network configuration list: %w", err)
	}
	if list.Name == "" {
		return errors.New(`not a CNI network configuration list: no "name"`)
	}
	if len(list.Plugins) == 0 {
		return errors.New(`not a CNI network configuration list: no "plugins" (a single network's config must be wrapped in one)`)
	}
	for i, raw := range list.Plugins {
		var p struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(raw, &p); err != nil || p.Type == "" {
			return fmt.Errorf(`plugins[%d] has no "type"`, i)
		}
	}
	return nil
}

// writeFile puts data at path with mode, through a temporary file in the
// same directory renamed over it, unless path already holds data with
// that mode.
func writeFile(path string, data []byte, mode fs.FileMode, log *slog.Logger) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode {
			log.Info("already installed", "path", path)
			return nil
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a failure; gone by rename otherwise
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	log.Info("installed", "path", path)
	return nil
}
