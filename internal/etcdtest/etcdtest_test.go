package etcdtest

import (
	"context"
	"testing"
	"time"
)

func TestRestartKeepsDataAndPort(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	resp, err := c.Get(ctx, "k") // the same client reconnects to the same port
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v", resp.Kvs)
	}
}

func TestProxyCutAndHeal(t *testing.T) {
	s := Start(t)
	p := NewProxy(t, s.Addr())
	c := NewClient(t, p.Endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := c.Put(short, "k", "2")
	cancelShort()
	if err == nil {
		t.Fatal("write went through a cut proxy")
	}
	p.Heal()
	if _, err := c.Put(ctx, "k", "3"); err != nil {
		t.Fatalf("after heal: %v", err)
	}
	resp, err := s.Client(t).Get(ctx, "k")
	if err != nil || string(resp.Kvs[0].Value) != "3" {
		t.Fatalf("server holds %v, %v", resp.Kvs, err)
	}
}
