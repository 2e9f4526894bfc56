package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/vxlan"
)

// registerMetrics exposes the agent's state. Every metric reads the
// packages' own status when scraped, so nothing on a hot path does extra
// work for them.
func (a *agent) registerMetrics(reg *prometheus.Registry, m *etcd.Manager) {
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
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge("weft_ready", "1 when subnet.env is written and the datapath has converged.", func() float64 {
		if ok, _ := a.ready(); ok {
			return 1
		}
		return 0
	})
	counter("weft_lease_renewals_total", "Renewals of this node's lease.", func() float64 { return float64(m.Stats().Renewals) })
	counter("weft_lease_losses_total", "Leases this node lost (expired, deleted or taken).", func() float64 { return float64(m.Stats().Losses) })
	counter("weft_etcd_errors_total", "Failed etcd requests, each retried.", func() float64 { return float64(m.Stats().Errors) })

	for _, fam := range []struct {
		label string
		pick  func(v4, v6 *vxlan.Datapath) *vxlan.Datapath
	}{
		{"ipv4", func(v4, _ *vxlan.Datapath) *vxlan.Datapath { return v4 }},
		{"ipv6", func(_, v6 *vxlan.Datapath) *vxlan.Datapath { return v6 }},
	} {
		status := func() (vxlan.Status, bool) {
			dp := fam.pick(a.net.Datapaths())
			if dp == nil {
				return vxlan.Status{}, false
			}
			return dp.Status().Reconciler, true
		}
		labels := prometheus.Labels{"family": fam.label}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_peers", Help: "Peers whose routes, neighbours and FDB entries are programmed.", ConstLabels: labels,
		}, func() float64 {
			st, _ := status()
			n := 0
			for _, p := range st.Peers {
				if p.Programmed {
					n++
				}
			}
			return float64(n)
		}))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "weft_reconcile_duration_seconds", Help: "Duration of the last full datapath reconcile.", ConstLabels: labels,
		}, func() float64 { st, _ := status(); return st.LastSync.Duration.Seconds() }))
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_datapath_repairs_total", Help: "Corrections of datapath drift.", ConstLabels: labels,
		}, func() float64 { st, _ := status(); return float64(st.Repaired) }))
	}
}
