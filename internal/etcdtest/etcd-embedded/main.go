// Command etcd-embedded is the embedded etcd server
// (go.etcd.io/etcd/server/v3/embed) as a process of its own, with the
// flags of etcd's that package etcdtest passes an etcd binary: so that a
// scale test measures the server's CPU and memory apart from its clients,
// with the server's version this module builds against.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	cfg := embed.NewConfig()
	var clientURLs, advertiseClient, peerURLs, advertisePeer string
	var heartbeat, election uint
	flag.StringVar(&cfg.Name, "name", "default", "member name")
	flag.StringVar(&cfg.Dir, "data-dir", "", "data directory")
	flag.StringVar(&clientURLs, "listen-client-urls", "", "client URLs to listen on")
	flag.StringVar(&advertiseClient, "advertise-client-urls", "", "client URLs to advertise")
	flag.StringVar(&peerURLs, "listen-peer-urls", "", "peer URLs to listen on")
	flag.StringVar(&advertisePeer, "initial-advertise-peer-urls", "", "peer URLs to advertise")
	flag.StringVar(&cfg.InitialCluster, "initial-cluster", "", "initial cluster")
	flag.UintVar(&heartbeat, "heartbeat-interval", 100, "heartbeat in ms")
	flag.UintVar(&election, "election-timeout", 1000, "election timeout in ms")
	flag.StringVar(&cfg.LogLevel, "log-level", "error", "log level")
	flag.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", 0, "backend quota")
	flag.UintVar(&cfg.AuthTokenTTL, "auth-token-ttl", cfg.AuthTokenTTL, "seconds an unused simple auth token lives")
	flag.Parse()
	cfg.TickMs, cfg.ElectionMs = heartbeat, election
	for _, u := range []struct {
		s   string
		dst *[]url.URL
	}{{clientURLs, &cfg.ListenClientUrls}, {advertiseClient, &cfg.AdvertiseClientUrls}, {peerURLs, &cfg.ListenPeerUrls}, {advertisePeer, &cfg.AdvertisePeerUrls}} {
		if u.s == "" {
			continue
		}
		var urls []url.URL
		for _, s := range strings.Split(u.s, ",") {
			parsed, err := url.Parse(s)
			if err != nil {
				fmt.Fprintln(os.Stderr, "etcd-embedded:", err)
				os.Exit(2)
			}
			urls = append(urls, *parsed)
		}
		*u.dst = urls
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd-embedded:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	select {
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcd-embedded:", err)
		os.Exit(1)
	case <-sig:
		e.Close()
	}
}
