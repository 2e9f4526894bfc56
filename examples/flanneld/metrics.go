package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	weftagent "github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/lease/admit"
	"github.com/weftnet/weft/probe"
	"github.com/weftnet/weft/vxlan"
)

// registerMetrics exposes the agent's state. Every metric reads the
// packages' own status when scraped, so nothing on a hot path does extra
// work for them.
// The lease source's counters are registered when it exists.
func (a *agent) registerMetrics(reg *prometheus.Registry) {
	a.reg = reg
	// The process's memory and CPU, and the Go runtime's, with the
	// collector's own figures (go_gc_heap_live_bytes, go_gc_heap_goal_bytes):
	// RSS alone does not say whether memory is live or awaiting collection.
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC)),
	)
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("weft_ready", "1 when subnet.env is written and the datapath has converged.", func() float64 {
		if ok, _ := a.ready(); ok {
			return 1
		}
		return 0
	})

	offline := func() (weftagent.OfflineStatus, bool) {
		a.mu.Lock()
		n := a.net
		a.mu.Unlock()
		if n == nil {
			return weftagent.OfflineStatus{}, false
		}
		return n.Offline()
	}
	gauge("weft_local_state_in_use", "1 while the node runs from its local state because the control plane has not answered since it started.", func() float64 {
		if _, ok := offline(); ok {
			return 1
		}
		return 0
	})
	gauge("weft_local_state_age_seconds", "Age of the local state the node runs from (since it was written); 0 when it runs on the control plane.", func() float64 {
		if st, ok := offline(); ok {
			return time.Since(st.Written).Seconds()
		}
		return 0
	})

	a.registerProbeMetrics(reg)

	// Peer leases admission rejects, by rule: none of them is programmed.
	for _, reason := range admit.Reasons() {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_peers_rejected", Help: "Peer leases admission rejects now, by the rule that rejects them; see the log or the datapath status for each.",
			ConstLabels: prometheus.Labels{"reason": string(reason)},
		}, func() float64 {
			a.mu.Lock()
			n := a.net
			a.mu.Unlock()
			if n == nil {
				return 0
			}
			return float64(n.RejectedCounts()[reason])
		}))
	}

	for _, fam := range []struct {
		label string
		pick  func(v4, v6 *vxlan.Datapath) *vxlan.Datapath
	}{
		{"ipv4", func(v4, _ *vxlan.Datapath) *vxlan.Datapath { return v4 }},
		{"ipv6", func(_, v6 *vxlan.Datapath) *vxlan.Datapath { return v6 }},
	} {
		datapath := func() *vxlan.Datapath {
			a.mu.Lock()
			n := a.net
			a.mu.Unlock()
			if n == nil {
				return nil
			}
			return fam.pick(vxlan.DatapathsOf(n.Datapaths()))
		}
		// One count serves every gauge of a scrape: each walks the
		// peers under the reconciler's lock.
		var (
			countsMu sync.Mutex
			counted  vxlan.Counts
			countAt  time.Time
		)
		counts := func() vxlan.Counts {
			countsMu.Lock()
			defer countsMu.Unlock()
			if time.Since(countAt) > 50*time.Millisecond { // longer than a scrape takes, shorter than a test waits
				counted, countAt = vxlan.Counts{}, time.Now()
				if dp := datapath(); dp != nil {
					counted = dp.Counts()
				}
			}
			return counted
		}
		labels := prometheus.Labels{"family": fam.label}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_peers_desired", Help: "Admitted peers the datapath is to program.", ConstLabels: labels,
		}, func() float64 { return float64(counts().Wanted) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_peers_programmed", Help: "Peers whose routes, neighbours and FDB entries are all in the kernel.", ConstLabels: labels,
		}, func() float64 { return float64(counts().Programmed) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_peers_failed", Help: "Admitted peers whose routes or entries the kernel refused; each is retried with backoff.", ConstLabels: labels,
		}, func() float64 { return float64(counts().Failed) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_datapath_last_sync_duration_seconds", Help: "Duration of the last full reconcile of the datapath's peers.", ConstLabels: labels,
		}, func() float64 { return counts().LastSync.Duration.Seconds() }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_datapath_repairs_total", Help: "Corrections of datapath drift.", ConstLabels: labels,
		}, func() float64 { return float64(counts().Repaired) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_vxlan_tx_checksum_offload", ConstLabels: labels,
			Help: "TX checksum offload of the VXLAN device as read back: 1 on, 0 off, -1 unknown (no device yet, or it could not be read; see the status).",
		}, func() float64 {
			dp := datapath()
			if dp == nil {
				return -1
			}
			switch dp.Summary().Offload.State {
			case "on":
				return 1
			case "off":
				return 0
			}
			return -1
		}))
	}
}

// registerProbeMetrics exposes node-to-node probing, aggregated: counts by
// outcome and one RTT histogram, never a series per peer, which at
// thousands of nodes would swamp Prometheus.
func (a *agent) registerProbeMetrics(reg *prometheus.Registry) {
	a.probeRTT = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weft_probe_rtt_seconds", Help: "Round trip of the probes that got a reply, over the overlay to peers' VTEP addresses.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	a.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_probes_total", Help: "Probes of peers over the overlay, by result: reachable (a reply) or unreachable.",
	}, []string{"result"})
	a.probes.WithLabelValues("reachable")
	a.probes.WithLabelValues("unreachable")
	reg.MustRegister(a.probeRTT, a.probes)
	a.registerDiagnosisMetrics(reg)
	for _, state := range []string{"reachable", "unreachable", "unprobed"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_probe_peers", Help: "Peers by the result of their last probe over the overlay; unprobed: not probed yet.",
			ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 {
			a.mu.Lock()
			p := a.prober
			a.mu.Unlock()
			if p == nil {
				return 0
			}
			c := p.Counts()
			switch state {
			case "reachable":
				return float64(c.Reachable)
			case "unreachable":
				return float64(c.Unreachable)
			}
			return float64(c.Unprobed)
		}))
	}
}

// registerDiagnosisMetrics exposes what probing found of the failing
// peers, and what it sent: counts, never a series per peer.
func (a *agent) registerDiagnosisMetrics(reg *prometheus.Registry) {
	counts := func() probe.Counts {
		a.mu.Lock()
		p := a.prober
		a.mu.Unlock()
		if p == nil {
			return probe.Counts{}
		}
		return p.Counts()
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "weft_probe_path_mtu_black_holes",
		Help: "Peers whose small probes are answered and full-size ones (the device's MTU, DF set) lost: the underlay path carries less than the overlay needs; weftctl peers --failing names the sizes and the fix.",
	}, func() float64 { return float64(counts().MTUBlackHoles) }))
	for _, u := range []string{"reachable", "unreachable", "unknown"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_probe_unreachable_peers", ConstLabels: prometheus.Labels{"underlay": u},
			Help: "Peers unreachable over the overlay, by their underlay check: reachable (the overlay's UDP port dropped on the path or at the peer, or the peer's datapath), unreachable (host down or network cut), unknown (not checked).",
		}, func() float64 {
			c := counts()
			switch u {
			case "reachable":
				return float64(c.UnderlayReachable)
			case "unreachable":
				return float64(c.UnderlayUnreachable)
			}
			return float64(c.Unreachable - c.UnderlayReachable - c.UnderlayUnreachable)
		}))
	}
	for kind, name := range map[int]string{probe.KindSmall: "small", probe.KindFull: "full", probe.KindUnderlay: "underlay", probe.KindTCP: "tcp"} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_probe_sent_total", ConstLabels: prometheus.Labels{"kind": name},
			Help: "What probing sent: small echoes over the overlay, full-size ones (path MTU checks), echoes to peers' public addresses, TCP connections to them.",
		}, func() float64 {
			a.mu.Lock()
			p := a.prober
			a.mu.Unlock()
			if p == nil {
				return 0
			}
			sent, _ := p.Sent()
			return float64(sent[kind])
		}))
	}
}

// observeProbe records one probe in the metrics, if they are served.
func (a *agent) observeProbe(_ probe.Target, r probe.Result) {
	if a.probes == nil {
		return
	}
	if r.Reachable {
		a.probes.WithLabelValues("reachable").Inc()
		a.probeRTT.Observe(r.RTT.Seconds())
		return
	}
	a.probes.WithLabelValues("unreachable").Inc()
}
