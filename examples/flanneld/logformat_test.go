package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/internal/daemontest"
)

// TestKubeModeLogOneFormat: flanneld in kube mode as a DaemonSet starts it
// (no --kubeconfig-file or --kube-api-url: the in-cluster config), here
// where there is no service account token, logs only lines of its own
// format, one of which says what is missing; client-go's klog lines
// ("W1207 ... client_config.go:683] Neither --kubeconfig nor --master
// was specified") are not among them.
func TestKubeModeLogOneFormat(t *testing.T) {
	if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token"); err == nil {
		t.Skip("this machine is a pod: the in-cluster config would work")
	}
	bin := daemontest.Flanneld(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--kube-subnet-mgr", "--subnet-file", filepath.Join(dir, "subnet.env"),
		"--net-config-path", filepath.Join(dir, "net-conf.json"), "--state-dir", filepath.Join(dir, "state"),
		"--status-socket", filepath.Join(dir, "status.sock"), "--healthz-port", "0")
	cmd.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=9", "NODE_NAME=log-format")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("flanneld in kube mode with no cluster to reach exited cleanly:\n%s", out)
	}
	if bad := daemontest.OtherFormats(string(out)); len(bad) != 0 {
		t.Errorf("lines not in the log's format:\n%s", strings.Join(bad, "\n"))
	}
	if !bytes.Contains(out, []byte("--kubeconfig-file")) {
		t.Errorf("the log does not name the flag to set:\n%s", out)
	}
}

// TestKlogThroughSlog: what client-go logs through klog comes out in
// the agent's format, on the agent's logger.
func TestKlogThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	c, err := newLogConfig(0, true, false, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	log, closeLog, err := c.open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer closeLog()
	routeKlog(log)
	defer klog.ClearLogger()
	klog.Warning("a warning from client-go")
	klog.ErrorS(nil, "an error from client-go", "node", "n1")
	klog.V(4).Info("a detail weft's -v 0 drops")
	klog.Flush()
	got := buf.String()
	if bad := daemontest.OtherFormats(got); len(bad) != 0 {
		t.Errorf("klog's lines not in the log's format:\n%s", strings.Join(bad, "\n"))
	}
	for _, want := range []string{"a warning from client-go", "an error from client-go", "node=n1", "component=client-go"} {
		if !strings.Contains(got, want) {
			t.Errorf("the log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "a detail") {
		t.Errorf("klog's V(4) came through at -v 0:\n%s", got)
	}
}
