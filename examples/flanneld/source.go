package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/subnetenv"
	"github.com/weftnet/weft/vxlan"
)

// source is the lease manager flanneld runs on (etcd, or the Kubernetes
// API with --kube-subnet-mgr), with what the rest of the daemon needs of
// it beyond lease.Manager.
type source struct {
	lease.Manager
	// condition says what the manager waits for or why it is failing, for
	// /readyz; "" when nothing.
	condition func() string
	// metrics registers the manager's counters.
	metrics func(reg *prometheus.Registry)
	// networkUp is told once the datapath has converged on a lease.
	networkUp func()
	// netCfg completes the Network's config: the previous subnet, and in
	// kube mode the hints of the node's annotations.
	netCfg vxlan.NetworkConfig
	// endpoints are the control plane's URLs: no peer lease may route
	// their addresses into the overlay.
	endpoints []string
	close     func()
}

// newEtcdSource is etcd mode: the previous subnet comes from subnet.env.
func newEtcdSource(c config, log *slog.Logger) (*source, error) {
	m, err := etcd.New(etcd.Options{
		Endpoints: strings.Split(c.etcdEndpoints, ","), Prefix: c.etcdPrefix,
		CAFile: c.etcdCAFile, CertFile: c.etcdCertfile, KeyFile: c.etcdKeyfile,
		Username: c.etcdUsername, Password: c.etcdPassword,
		Node: c.node, TTL: c.leaseTTL, RenewMargin: renewMargin(c), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	s := &source{
		Manager:   m,
		endpoints: strings.Split(c.etcdEndpoints, ","),
		condition: func() string { return m.Stats().Condition },
		networkUp: func() {},
		close:     func() { m.Close() },
		metrics: func(reg *prometheus.Registry) {
			counter(reg, "weft_lease_renewals_total", "Renewals of this node's lease.", func() float64 { return float64(m.Stats().Renewals) })
			counter(reg, "weft_lease_losses_total", "Leases this node lost (expired, deleted or taken).", func() float64 { return float64(m.Stats().Losses) })
			counter(reg, "weft_etcd_errors_total", "Failed etcd requests, each retried.", func() float64 { return float64(m.Stats().Errors) })
		},
	}
	if f, err := subnetenv.Read(c.subnetFile); err == nil {
		s.netCfg.Previous = lease.Key{IPv4: f.Subnet, IPv6: f.IPv6Subnet}
	}
	return s, nil
}

// newKubeSource is kube mode: the lease is the Node's PodCIDR, and the
// Node's annotations may choose the public IP (node-public-ip) and carry
// VTEP MACs to keep. It waits, logging, until the Node can be read.
func newKubeSource(ctx context.Context, c config, log *slog.Logger, status func(string)) (*source, error) {
	// Both empty means in-cluster: the service account's token and the
	// KUBERNETES_SERVICE_* environment.
	rc, err := clientcmd.BuildConfigFromFlags(c.kubeAPIURL, c.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig-file %q / --kube-api-url %q: %w", c.kubeconfig, c.kubeAPIURL, err)
	}
	rc.UserAgent = "weft-flanneld/" + version
	nodes, err := kube.NewNodeClient(rc)
	if err != nil {
		return nil, err
	}
	m, err := kube.New(kube.Options{
		Nodes: nodes, NodeName: c.node, NetConfPath: c.netConfPath, AssignPodCIDRs: c.kubeAssignPodCIDRs, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	var hints kube.NodeHints
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		if hints, err = m.Hints(ctx); err == nil {
			break
		}
		status("reading Node " + c.node + ": " + err.Error())
		log.Warn("cannot read this node's Node yet; retrying", "node", c.node, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			m.Close()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
	s := &source{
		Manager:   m,
		endpoints: []string{rc.Host},
		condition: func() string { return m.Stats().Condition },
		networkUp: m.SetNetworkAvailable,
		close:     m.Close,
		metrics: func(reg *prometheus.Registry) {
			counter(reg, "weft_lease_losses_total", "Leases this node lost (its PodCIDR changed or its Node was deleted).", func() float64 { return float64(m.Stats().Losses) })
			counter(reg, "weft_apiserver_errors_total", "Failed Kubernetes API requests, each retried.", func() float64 { return float64(m.Stats().Errors) })
		},
	}
	s.netCfg.PublicIP, s.netCfg.PublicIPv6 = hints.PublicIP, hints.PublicIPv6
	for _, f := range []struct {
		data json.RawMessage
		dst  *vxlan.MAC
		seed string
	}{{hints.BackendData, &s.netCfg.VtepMAC, c.node}, {hints.BackendV6Data, &s.netCfg.VtepMACv6, c.node + " ipv6"}} {
		var bd vxlan.BackendData
		if len(f.data) == 0 || json.Unmarshal(f.data, &bd) != nil || bd.VtepMAC == (vxlan.MAC{}) {
			continue
		}
		*f.dst = bd.VtepMAC
		if derived := vxlan.DeriveMAC(f.seed, bd.VNI); derived != bd.VtepMAC {
			log.Info("keeping the VTEP MAC the node's annotations publish, so that peers' entries stay valid",
				"mac", bd.VtepMAC, "derived", derived)
		}
	}
	return s, nil
}

func counter(reg *prometheus.Registry, name, help string, f func() float64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}
