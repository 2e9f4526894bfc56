//go:build linux

package status

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Register serves the Document at Path and on-demand probes at
// ProbePath on mux.
func (s Source) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Path, s.serveDocument)
	mux.HandleFunc("POST "+ProbePath, s.serveProbe)
}

// Handler returns a handler of its own with Register's paths.
func (s Source) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

func (s Source) serveDocument(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, s.Document(q))
}

func (s Source) serveProbe(w http.ResponseWriter, r *http.Request) {
	if s.Prober == nil {
		writeJSON(w, http.StatusNotImplemented, Error{Error: "probing is off on this node"})
		return
	}
	peer := r.URL.Query().Get("peer")
	if peer == "" {
		writeJSON(w, http.StatusBadRequest, Error{Error: "peer=: give a peer's subnet, an address in it, its public IP or its node name"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.Prober.Config().Timeout+5*time.Second)
	defer cancel()
	t, res, err := s.Prober.Probe(ctx, peer)
	if err != nil {
		code := http.StatusServiceUnavailable
		if !t.Subnet.IsValid() {
			code = http.StatusNotFound
		}
		writeJSON(w, code, Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ProbeAnswer{Peer: t.Subnet.String(), Addr: t.Addr.String(), Node: t.Node, Result: *probeOf(res)})
}

// writeJSON encodes v after every lock is let go: the Document is a
// snapshot by then.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
