package main

import (
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftnet/weft/status"
)

// serveHealth serves /healthz, /readyz, /metrics and the status on addr:
// a port the shipped DaemonSet opens on every address of the host
// network, to any pod, unauthenticated. What its clients can hold is
// bounded (status.Limits' defaults): idle and slow clients are timed
// out, a client past the connection cap closes the longest-idle one
// (else the oldest) rather than waiting (so that kubelet's probe, a new connection each
// time, is always answered), an unread answer is dropped at the write
// deadline, and /status pages are cut at status.DefaultLimit peers.
func (a *agent) serveHealth(addr string) (*status.Server, error) {
	mux := http.NewServeMux()
	reg := prometheus.NewRegistry()
	a.registerMetrics(reg)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	a.status.mount(mux, status.DefaultLimit)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := a.ready()
		switch {
		case !ok:
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
		case why != "":
			// Running from the local state: the pods' network works,
			// which is what a probe of this agent asks.
			fmt.Fprintln(w, "ready: "+why)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--healthz-ip/--healthz-port %s: %w", addr, err)
	}
	srv := status.NewServer(mux, status.Limits{}, a.log.With("server", "health"))
	go srv.Serve(l)
	return srv, nil
}
