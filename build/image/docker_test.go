package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerTools is Debian's dockerd and the docker client shipped beside it,
// and containerd for the daemon to use, or a skip (a failure when
// WEFT_REQUIRE_DOCKER is set, as CI sets it).
func dockerTools(t *testing.T) (dockerd, docker, containerd string) {
	t.Helper()
	var err1, err2 error
	dockerd, err1 = exec.LookPath("dockerd")
	containerd, err2 = exec.LookPath("containerd")
	if err := errors.Join(err1, err2); err != nil {
		if os.Getenv("WEFT_REQUIRE_DOCKER") != "" {
			t.Fatalf("WEFT_REQUIRE_DOCKER is set but dockerd or containerd is missing (apt-get install docker.io): %v", err)
		}
		t.Skipf("docker is not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("dockerd needs root")
	}
	// The client of dockerd's own package (/usr/sbin/dockerd,
	// /usr/bin/docker), not another one earlier in PATH.
	docker = filepath.Join(filepath.Dir(filepath.Dir(dockerd)), "bin", "docker")
	if _, err := os.Stat(docker); err != nil {
		if docker, err = exec.LookPath("docker"); err != nil {
			t.Fatalf("dockerd is installed but no docker client: %v", err)
		}
	}
	return dockerd, docker, containerd
}

// hostDockerPaths are where a dockerd or containerd left to its defaults
// would write on the host; the private ones must not touch them.
var hostDockerPaths = []string{"/var/lib/docker", "/run/docker", "/run/docker.sock", "/run/containerd", "/var/lib/containerd", "/etc/docker/key.json", "/opt/containerd"}

// startDocker runs a dockerd of its own under a temporary directory (data
// and exec roots, pidfile, config, key, socket) on a private containerd,
// with no bridge, no iptables rules and no sysctl changes, and returns the
// -H address to reach it. It is stopped, and whatever it mounted there
// unmounted, when the test ends; its log is printed if the test failed.
func startDocker(t *testing.T, dockerd, docker, containerd, ctr string) string {
	t.Helper()
	// Its own containerd: left unset, dockerd 20.10 uses the host's if
	// /run/containerd/containerd.sock exists, and otherwise supervises one
	// whose opt plugin writes /opt/containerd.
	csock := startContainerd(t, containerd, ctr)
	dir, err := os.MkdirTemp("", "weft-docker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing dockerd's directory: %v", err)
		}
	})
	cfg := filepath.Join(dir, "daemon.json")
	// The trust key dockerd 20.10 writes to /etc/docker/key.json unless
	// its config moves it (there is no flag).
	key := `{"deprecated-key-path": "` + filepath.Join(dir, "key.json") + `"}` + "\n"
	if err := os.WriteFile(cfg, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	host := "unix://" + filepath.Join(dir, "docker.sock")
	var log bytes.Buffer
	cmd := exec.Command(dockerd,
		"--config-file", cfg, // not /etc/docker/daemon.json
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", host,
		"--containerd", csock,
		"--storage-driver", "vfs", // no overlay mounts
		"--bridge", "none", "--iptables=false", "--ip6tables=false",
		"--ip-forward=false", "--ip-masq=false", // no sysctl, no NAT rule
		"--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// A clean stop first (it runs no containers, so it is quick), then
		// a kill; containerd's cleanup, registered earlier, runs after.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("dockerd's log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(2 * time.Minute); ; {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("dockerd exited: %v\n%s", err, log.String())
		default:
		}
		if _, err := exec.Command(docker, "-H", host, "version").CombinedOutput(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd does not answer on %s\n%s", host, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return host
}

// dockerRun runs the docker client against the private daemon.
func dockerRun(t *testing.T, docker, host string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, docker, append([]string{"-H", host}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %s: %v", strings.Join(args, " "), out, err)
	}
	return string(out)
}

// TestImageDocker: Debian's docker.io 20.10, whose classic store takes one
// platform a tag, loads make image's tarball with docker load -i exactly
// as docs/install.md says: every one of the six platforms under the tag
// with its suffix (weft-flanneld:test-arm64, -armv7, ...), each the
// index's image for that platform (same image ID, the config's digest)
// with its architecture and variant, and nothing under the plain tag. A
// single platform's build (make image-local) then loads under the plain
// tag itself, as this machine's platform. No container is run.
func TestImageDocker(t *testing.T) {
	dockerd, docker, containerd := dockerTools(t)
	_, ctr := containerdTools(t)
	var absent []string
	for _, p := range hostDockerPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			absent = append(absent, p)
		}
	}
	t.Cleanup(func() {
		for _, p := range absent {
			if p == "/run/docker" {
				// dockerd 20.10 makes /run/docker/plugins, its plugin
				// sockets' directory, whatever its exec root (no flag
				// moves it); it stays empty, and goes with the daemon.
				os.Remove("/run/docker/plugins")
				os.Remove("/run/docker")
			}
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("the private dockerd or containerd left the host's %s", p)
			}
		}
	})
	path := multiImage(t)
	_, imgs := platformImages(t, path)
	if len(imgs) != len(platforms) {
		t.Fatalf("the image has %d platforms, want %d", len(imgs), len(platforms))
	}
	localPath := localImage(t)
	host := startDocker(t, dockerd, docker, containerd, ctr)
	t.Logf("docker version:\n%s", dockerRun(t, docker, host, "version"))

	start := time.Now()
	out := dockerRun(t, docker, host, "load", "-i", path)
	t.Logf("docker load -i (every platform), %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	for i, p := range platforms {
		tag := "weft-flanneld:test-" + p.tagSuffix()
		if !strings.Contains(out, "Loaded image: "+tag+"\n") {
			t.Errorf("docker load does not say it loaded %s", tag)
		}
		id, err := imgs[i].ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		checkDockerImage(t, docker, host, tag, p, id.String())
	}
	if out, err := exec.Command(docker, "-H", host, "image", "inspect", "weft-flanneld:test").CombinedOutput(); err == nil {
		t.Errorf("the classic store has an image under the plain tag after loading the index:\n%s", out)
	}
	ls := dockerRun(t, docker, host, "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	if n := len(strings.Fields(ls)) / 2; n != len(platforms) {
		t.Errorf("docker image ls lists %d images, want %d:\n%s", n, len(platforms), ls)
	}

	out = dockerRun(t, docker, host, "load", "-i", localPath)
	t.Logf("docker load -i (make image-local):\n%s", out)
	p := hostPlatform(t)
	img, err := readLayout(t, localPath).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := img.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index.json: %+v, %v", im, err)
	}
	li, err := img.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	id, err := li.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	checkDockerImage(t, docker, host, "weft-flanneld:test", p, id.String())
}

// checkDockerImage: docker image inspect shows tag as p's image whose ID
// (the digest of its config) is id, with p's architecture and variant.
// docker 20.10 leaves Variant out where it is empty (all but arm/v7), so
// a template naming it fails; the JSON is read instead.
func checkDockerImage(t *testing.T, docker, host, tag string, p platform, id string) {
	t.Helper()
	var got []struct {
		ID           string `json:"Id"`
		Os           string
		Architecture string
		Variant      string
	}
	out := dockerRun(t, docker, host, "image", "inspect", tag)
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("docker image inspect %s: %v:\n%s", tag, err, out)
	}
	g := got[0]
	if g.ID != id || g.Os != "linux" || g.Architecture != p.arch || g.Variant != p.variant {
		t.Errorf("%s: docker image inspect says %s %s/%s variant %q, want the image %s for %s", tag, g.ID, g.Os, g.Architecture, g.Variant, id, p)
	}
}
