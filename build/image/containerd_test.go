package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// containerdTools is containerd and ctr, or a skip (a failure when
// WEFT_REQUIRE_CONTAINERD is set, as CI sets it).
func containerdTools(t *testing.T) (daemon, ctr string) {
	t.Helper()
	var err1, err2 error
	daemon, err1 = exec.LookPath("containerd")
	ctr, err2 = exec.LookPath("ctr")
	if err := errors.Join(err1, err2); err != nil {
		if os.Getenv("WEFT_REQUIRE_CONTAINERD") != "" {
			t.Fatalf("WEFT_REQUIRE_CONTAINERD is set but containerd or ctr is missing (apt-get install containerd): %v", err)
		}
		t.Skipf("containerd is not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	return daemon, ctr
}

// containerdConfig is the private daemon's: no CRI (it would want CNI and
// a kubelet), no snapshotters but native (nothing here needs overlay
// mounts), and no opt plugin, which would create /opt/containerd.
const containerdConfig = `version = 2
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]
`

// startContainerd runs a containerd of its own under a temporary
// directory (root, state, sockets) and returns its GRPC socket. It is
// killed, and whatever it mounted there unmounted, when the test ends.
func startContainerd(t *testing.T, daemon, ctr string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "weft-ctr-")
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last in, first out: the directory goes after the
	// daemon is dead and its mounts are gone.
	t.Cleanup(func() {
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing containerd's directory: %v", err)
		}
	})
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(containerdConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "c.sock")
	var log bytes.Buffer
	cmd := exec.Command(daemon, "--config", cfg, "--root", filepath.Join(dir, "root"), "--state", filepath.Join(dir, "state"), "--address", sock, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("containerd's log:\n%s", log.String())
		}
	})
	// Wait for the socket to answer; a daemon that exits is a failure at
	// once, one that never listens is after a generous while.
	for deadline := time.Now().Add(time.Minute); ; {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("containerd exited: %v\n%s", err, log.String())
		default:
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd does not listen on %s\n%s", sock, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command(ctr, "--address", sock, "version").CombinedOutput(); err != nil {
		t.Fatalf("ctr version: %s: %v", out, err)
	}
	return sock
}

// unmountUnder detaches every mount below dir (an unpack the daemon was
// killed in the middle of leaves its temporary mounts), deepest first.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("reading mounts: %v", err)
		return
	}
	defer f.Close()
	var under []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			under = append(under, fields[4])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		if err := syscall.Unmount(under[i], syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", under[i], err)
		}
	}
}

// ctrRun runs ctr against the private daemon in namespace ns.
func ctrRun(t *testing.T, ctr, sock, ns string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctr, append([]string{"--address", sock, "--namespace", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %s: %s: %v", strings.Join(args, " "), out, err)
	}
	return string(out)
}

// imageBlobs is every blob the tarball's index reaches: the index itself,
// and per platform its manifest, config and layers.
func imageBlobs(t *testing.T, path string) (index v1.Hash, perPlatform map[string][]v1.Hash) {
	t.Helper()
	top, err := readLayout(t, path).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index.json: %+v, %v", im, err)
	}
	descs, imgs := platformImages(t, path)
	perPlatform = map[string][]v1.Hash{}
	for i, img := range imgs {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		blobs := []v1.Hash{descs[i].Digest, m.Config.Digest}
		for _, l := range m.Layers {
			blobs = append(blobs, l.Digest)
		}
		perPlatform[descs[i].Platform.String()] = blobs
	}
	return im.Manifests[0].Digest, perPlatform
}

// contentDigests is the digests ctr content ls lists in namespace ns.
func contentDigests(t *testing.T, ctr, sock, ns string) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for _, line := range strings.Split(ctrRun(t, ctr, sock, ns, "content", "ls", "--quiet"), "\n") {
		if d := strings.TrimSpace(line); d != "" {
			got[d] = true
		}
	}
	return got
}

// TestImageContainerd: Debian's containerd 1.6, the runtime the issue's
// cluster ran, imports make image's index with ctr images import
// --all-platforms, exactly as docs/install.md says: the tag names the
// index, and the manifest, config and layer of every one of the six
// platforms are in its content store. Without --all-platforms only this
// machine's platform's content is (the documented difference), so the
// check of the other platforms can fail.
func TestImageContainerd(t *testing.T) {
	daemon, ctr := containerdTools(t)
	host := hostPlatform(t).String()
	path := multiImage(t)
	index, perPlatform := imageBlobs(t, path)
	if len(perPlatform) != len(platforms) {
		t.Fatalf("the image has %d platforms, want %d", len(perPlatform), len(platforms))
	}
	sock := startContainerd(t, daemon, ctr)
	const ref = "docker.io/library/weft-flanneld:test"

	for _, tc := range []struct {
		ns  string
		all bool
	}{{"weft-test-host", false}, {"weft-test-all", true}} {
		args := []string{"images", "import", "--snapshotter", "native"}
		if tc.all {
			args = append(args, "--all-platforms")
		}
		t.Logf("%s: ctr %s:\n%s", tc.ns, strings.Join(args, " "), ctrRun(t, ctr, sock, tc.ns, append(args, path)...))

		ls := ctrRun(t, ctr, sock, tc.ns, "images", "ls")
		if !containsLine(ls, ref, index.String()) {
			t.Errorf("%s: ctr images ls does not name %s at the index %s:\n%s", tc.ns, ref, index, ls)
		}
		// ctr images check weighs this machine's platform alone: it says
		// complete whether or not the others were imported, so the
		// content store is what tells them apart.
		check := ctrRun(t, ctr, sock, tc.ns, "images", "check", "--snapshotter", "native")
		if !containsLine(check, ref, "complete", "true") {
			t.Errorf("%s: ctr images check does not say %s is complete and unpacked:\n%s", tc.ns, ref, check)
		}
		t.Logf("%s: ctr images check:\n%s", tc.ns, check)

		have := contentDigests(t, ctr, sock, tc.ns)
		if !have[index.String()] {
			t.Errorf("%s: the index %s is not in the content store", tc.ns, index)
		}
		for p, blobs := range perPlatform {
			var missing []string
			for _, b := range blobs {
				if !have[b.String()] {
					missing = append(missing, b.String())
				}
			}
			switch {
			case (tc.all || p == host) && len(missing) > 0:
				t.Errorf("%s: %s: %d of %d blobs (manifest, config, layers) not imported: %v", tc.ns, p, len(missing), len(blobs), missing)
			case !tc.all && p != host && len(missing) == 0:
				t.Errorf("%s: %s's content was imported without --all-platforms: the check cannot tell the difference", tc.ns, p)
			}
		}
		want := 1 + len(perPlatform[host])
		if tc.all {
			want = 1
			for _, blobs := range perPlatform {
				want += len(blobs)
			}
		}
		if len(have) != want {
			t.Errorf("%s: %d blobs in the content store, want %d", tc.ns, len(have), want)
		}
		t.Logf("%s: %d blobs in the content store", tc.ns, len(have))
	}
}

// containsLine reports whether a line of out holds every one of words.
func containsLine(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		ok := true
		for _, w := range words {
			found := false
			for _, f := range fields {
				found = found || f == w
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}
