package main

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	weftagent "github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/hostrules"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/probe"
)

// agent is the running daemon's state, for the health endpoints.
type agent struct {
	cfg config
	log *slog.Logger
	src *source

	mu       sync.Mutex
	net      *weftagent.Network
	starting string               // why there is no Network yet
	reg      *prometheus.Registry // the metrics, when served
	held     lease.Lease
	netConf  lease.Config
	mtu      int
	written  bool   // subnet.env matches the lease and config
	lastErr  string // of the last subnet.env write or removal
	// withdrawn is why the Network last withdrew its State (and with it
	// subnet.env); zero once a State holds again.
	withdrawn weftagent.Withdrawal
	// rulesMu serialises the rules' and subnet.env's I/O; mu is never
	// held across that I/O.
	rulesMu sync.Mutex
	rules   *hostrules.Rules // --ip-masq, --iptables-forward-rules, --ip-blackhole-route

	status *statusView
	prober *probe.Prober // nil with probing off; under mu
	// probeRTT and probes observe each probe, when metrics are served.
	probeRTT prometheus.Histogram
	probes   *prometheus.CounterVec
}

// ready reports whether subnet.env is written and the datapath converged,
// and if not, why not; ready, the reason says whether the node runs from
// its local state.
func (a *agent) ready() (bool, string) {
	a.mu.Lock()
	n, starting := a.net, a.starting
	a.mu.Unlock()
	if n == nil {
		return false, starting
	}
	ok, why := n.Ready()
	if !ok {
		return false, why
	}
	a.mu.Lock()
	prober := a.prober
	a.mu.Unlock()
	if prober != nil && a.cfg.probeAffectsReadiness {
		if ok, why := probeReadiness(prober); !ok {
			return false, why
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.lastErr != "":
		return false, "cannot write or remove subnet.env: " + a.lastErr
	case !a.written && a.withdrawn.Reason != 0 && a.withdrawn.Reason != weftagent.WithdrawStarting:
		return false, "subnet.env removed (" + a.withdrawn.Reason.String() + "); waiting for a lease"
	case !a.written:
		return false, "subnet.env not written yet"
	}
	return true, why
}
