package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftnet/weft/kube"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/subnetenv"
)

// source is the lease manager flanneld runs on (etcd, or the Kubernetes
// API with --kube-subnet-mgr), with what the rest of the daemon needs
// beside it. The Manager is handed to the Network as it is, so that the
// Network finds the optional interfaces it has (package lease): kube's
// hints and NetworkUnavailable condition, etcd's own-lease reader, and
// both conditions.
type source struct {
	manager lease.Manager
	// metrics registers the manager's counters.
	metrics func(reg *prometheus.Registry)
	// previous is the subnet subnet.env holds, asked for again (etcd mode).
	previous lease.Key
	// endpoints are the control plane's URLs: no peer lease may route
	// their addresses into the overlay.
	endpoints []string
}

// newEtcdSource is etcd mode: the previous subnet comes from subnet.env,
// or from the copy kept of it while it was withdrawn.
func newEtcdSource(c config, log *slog.Logger) (*source, error) {
	m, err := etcd.New(etcdOptions(c, log))
	if err != nil {
		return nil, err
	}
	s := &source{
		manager:   m,
		endpoints: strings.Split(c.etcdEndpoints, ","),
		metrics: func(reg *prometheus.Registry) {
			counter(reg, "weft_lease_renewals_total", "Renewals of this node's lease.", func() float64 { return float64(m.Stats().Renewals) })
			counter(reg, "weft_lease_losses_total", "Leases this node lost (expired, deleted or taken).", func() float64 { return float64(m.Stats().Losses) })
			counter(reg, "weft_etcd_errors_total", "Failed etcd requests, each retried.", func() float64 { return float64(m.Stats().Errors) })
		},
	}
	// subnet.env, or while it is withdrawn the copy kept of it.
	if f, err := subnetenv.ReadLast(c.subnetFile); err == nil {
		s.previous = lease.Key{IPv4: f.Subnet, IPv6: f.IPv6Subnet}
	}
	return s, nil
}

// etcdOptions are the etcd flags.
func etcdOptions(c config, log *slog.Logger) etcd.Options {
	return etcd.Options{
		Endpoints: strings.Split(c.etcdEndpoints, ","), Prefix: c.etcdPrefix,
		CAFile: c.etcdCAFile, CertFile: c.etcdCertfile, KeyFile: c.etcdKeyfile,
		Username: c.etcdUsername, Password: c.etcdPassword,
		Node: c.node, TTL: c.leaseTTL, RenewMargin: renewMargin(c), Logger: log,
	}
}

// newKubeSource is kube mode: the lease is the Node's PodCIDR, and the
// Node's annotations may choose the public IP (node-public-ip) and carry
// VTEP MACs to keep, which the Network reads as the Manager's hints.
func newKubeSource(ctx context.Context, c config, log *slog.Logger, status func(string)) (*source, error) {
	routeKlog(log)
	rc, err := kubeRESTConfig(c)
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "weft-flanneld/" + version
	if c.node == "" {
		if c.node, err = nodeOfPod(ctx, rc, log, status, nodeOfState(c), c.offlineAfter); err != nil {
			return nil, err
		}
	}
	nodes, err := kube.NewNodeClient(rc)
	if err != nil {
		return nil, err
	}
	m, err := kube.New(kube.Options{
		Nodes: nodes, NodeName: c.node, NetConfPath: c.netConfPath, AssignPodCIDRs: c.kubeAssignPodCIDRs,
		AnnotationPrefix: c.kubeAnnotationPrefix, Logger: log,
		// --set-node-network-unavailable=false: the Node's condition is
		// someone else's.
		LeaveNetworkCondition: !c.setNodeUnavailable,
	})
	if err != nil {
		return nil, err
	}
	return &source{
		manager:   m,
		endpoints: []string{rc.Host},
		metrics: func(reg *prometheus.Registry) {
			counter(reg, "weft_lease_losses_total", "Leases this node lost (its PodCIDR changed or its Node was deleted).", func() float64 { return float64(m.Stats().Losses) })
			counter(reg, "weft_apiserver_errors_total", "Failed Kubernetes API requests, each retried.", func() float64 { return float64(m.Stats().Errors) })
		},
	}, nil
}

// close closes the manager.
func (s *source) close() {
	if c, ok := s.manager.(io.Closer); ok {
		c.Close()
	}
}

// nodeOfPod is the node name in kube mode without --node-name or
// NODE_NAME: as flannel, the Pod's spec.nodeName, from the POD_NAME and
// POD_NAMESPACE its DaemonSet sets; without them, the hostname. A Pod
// that cannot be read yet (no RBAC for pods, an API server still coming
// up) is waited for, saying why; once offlineAfter has passed with the
// API server unreachable (not answering with an error), a host whose
// local state names its node (stateNode) boots as that node instead, so
// that an API server down at boot does not stop the overlay.
func nodeOfPod(ctx context.Context, rc *rest.Config, log *slog.Logger, status func(string), stateNode string, offlineAfter time.Duration) (string, error) {
	pod, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
	if pod == "" || ns == "" {
		name, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("no --node-name, NODE_NAME or POD_NAME/POD_NAMESPACE, and no hostname: %w", err)
		}
		log.Info("no --node-name, NODE_NAME or POD_NAME/POD_NAMESPACE: using the hostname as the node name", "node", name)
		return name, nil
	}
	start := time.Now()
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		rctx, cancel := context.WithTimeout(ctx, offlineAfter)
		name, err := kube.PodNodeName(rctx, rc, ns, pod)
		cancel()
		if err == nil {
			log.Info("node name from this agent's Pod", "pod", ns+"/"+pod, "node", name)
			return name, nil
		}
		var answered apierrors.APIStatus
		if stateNode != "" && time.Since(start) >= offlineAfter && !errors.As(err, &answered) {
			// Unreachable, not refused: an API server that answers
			// (403, 404) must be listened to, as the host may have been
			// registered under another name since.
			log.Warn("cannot read this agent's Pod for its node name; booting as the node the local state was written for", "pod", ns+"/"+pod, "node", stateNode, "err", err)
			return stateNode, nil
		}
		status("reading this agent's Pod for its node name: " + err.Error())
		log.Warn("cannot read this agent's Pod for its node name yet (its ClusterRole needs get on pods); retrying", "pod", ns+"/"+pod, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(delay):
		}
	}
}

func counter(reg *prometheus.Registry, name, help string, f func() float64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// renewMargin is --subnet-lease-renew-margin, kept below a short
// --subnet-lease-ttl so that tests can run with a TTL of seconds.
func renewMargin(c config) time.Duration {
	m := time.Duration(c.renewMargin) * time.Minute
	if m >= c.leaseTTL {
		m = c.leaseTTL / 2
	}
	return m
}

// kubeRESTConfig is the API server's address and credentials: from
// --kubeconfig-file and --kube-api-url, or with neither the in-cluster
// config (the service account's token and the KUBERNETES_SERVICE_*
// environment), asked for directly: clientcmd would log through klog that
// neither flag was given before trying it, and fall back to an empty
// config whose error names neither flag.
func kubeRESTConfig(c config) (*rest.Config, error) {
	if c.kubeconfig == "" && c.kubeAPIURL == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kube mode without --kubeconfig-file or --kube-api-url needs the in-cluster config, which failed (run in a Pod with a service account, or give --kubeconfig-file): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags(c.kubeAPIURL, c.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig-file %q / --kube-api-url %q: %w", c.kubeconfig, c.kubeAPIURL, err)
	}
	return rc, nil
}
