package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkAddDel measures ADD+DEL pairs per second through the exec'd
// plugin binary, as a container runtime drives it, beside Debian's
// host-local on the same directory: on tmpfs (/dev/shm) and on disk
// (ext4 here). weft fsyncs every reservation and record; host-local 1.1.1
// fsyncs nothing. Each ADD is of a pod (CNI_ARGS with its namespace and
// name), so weft also writes its record; 20 other pods hold IPs meanwhile,
// as on a busy node. "new" pods each have a name of their own, as most do
// (a Deployment's); "restart" pods cycle through 50 names, as restarted
// and StatefulSet pods do.
func BenchmarkAddDel(b *testing.B) {
	for _, fs := range []struct{ name, dir string }{{"tmpfs", "/dev/shm"}, {"disk", os.TempDir()}} {
		for _, plugin := range []string{"weft-ipam", "host-local"} {
			for _, pods := range []string{"new", "restart"} {
				b.Run(fs.name+"/"+pods+"/"+plugin, func(b *testing.B) { benchAddDel(b, fs.dir, plugin, pods == "new") })
			}
		}
	}
}

func benchAddDel(b *testing.B, dir, plugin string, newPods bool) {
	{
		{
			{
				if plugin == "host-local" {
					if _, err := os.Stat(hostLocal); err != nil {
						b.Skipf("%s is missing: apt-get install containernetworking-plugins", hostLocal)
					}
				}
				root, err := os.MkdirTemp(dir, "weft-ipam-bench-")
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { os.RemoveAll(root) })
				n := newNetworkIn(b, root)
				conf, path := n.conf, bin
				if plugin == "host-local" {
					conf, path = n.hostLocalConf(), hostLocal
				}
				run := func(command, c string) {
					cmd := n.command(command, c, podArgs(c), conf)
					cmd.Path, cmd.Args = path, []string{path}
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("%s %s %s: %v\n%s", plugin, command, c, err, out)
					}
				}
				for i := range 20 {
					run("ADD", fmt.Sprintf("busy%02d", i))
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					c := fmt.Sprintf("c%d", i%50)
					if newPods {
						c = fmt.Sprintf("c%d", i)
					}
					run("ADD", c)
					run("DEL", c)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
			}
		}
	}
}

// newNetworkIn is newNetwork with its files under root.
func newNetworkIn(b *testing.B, root string) *network {
	env := filepath.Join(root, "subnet.env")
	if err := os.WriteFile(env, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	n := &network{t: b, dataDir: filepath.Join(root, "data")}
	n.conf = fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "cbr0", "ipam": {"type": "weft-ipam", "subnetFile": %q, "dataDir": %q}}`, env, n.dataDir)
	return n
}
