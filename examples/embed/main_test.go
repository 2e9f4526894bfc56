package main

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/etcdtest"
	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/status"
	"github.com/weftnet/weft/subnetenv"
)

// TestEmbed runs the example agent on two simulated hosts against a real
// etcd: each writes a subnet.env with its own subnet and the device MTU,
// and their overlay addresses reach each other.
func TestEmbed(t *testing.T) {
	seg := netnstest.NewSegment(t, 2)
	srv := etcdtest.Start(t)
	if _, err := srv.Client(t).Put(context.Background(), "/coreos.com/network/config", `{"Network": "10.244.0.0/16"}`); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	statusAddr := l.Addr().String()
	l.Close()
	var files []string
	for i, h := range seg.Hosts {
		o := options{etcd: srv.Endpoint(), node: h.Name, publicIP: h.Addr.Addr(), ns: h.Handle,
			subnetFile: filepath.Join(t.TempDir(), "run", "flannel", "subnet.env")}
		if i == 0 {
			o.statusAddr = statusAddr
		}
		files = append(files, o.subnetFile)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, o) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	var envs []subnetenv.File
	for _, f := range files {
		deadline := time.Now().Add(15 * time.Second)
		for {
			env, err := subnetenv.Read(f)
			if err == nil {
				envs = append(envs, env)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no subnet.env at %s: %v", f, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if envs[0].Subnet == envs[1].Subnet || envs[0].MTU != 1450 || envs[0].Network.String() != "10.244.0.0/16" {
		t.Fatalf("subnet.env files: %+v", envs)
	}
	echo := seg.Hosts[1].ListenEcho(t, envs[1].Subnet.Addr())
	if err := seg.Hosts[0].WaitExchange(envs[0].Subnet.Addr(), echo.Addr, 10*time.Second); err != nil {
		t.Fatalf("overlay traffic between the embedded agents: %v", err)
	}
	// The status document, served by the embedder with the public API.
	client, err := status.NewClient("", "http://"+statusAddr)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := client.Status(context.Background(), status.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if !doc.Ready || doc.Node != seg.Hosts[0].Name || doc.Summary.Programmed != 1 || len(doc.Peers) != 1 || doc.Peers[0].Node != seg.Hosts[1].Name {
		t.Errorf("the embedded agent's status: %+v", doc)
	}
}
