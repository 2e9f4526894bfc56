//go:build linux

package status

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// maxBuilding bounds the Documents built at once: each copies every peer,
// and a client that asks in a loop must not take the node's CPU.
const maxBuilding = 2

var building = make(chan struct{}, maxBuilding)

// Register serves the Document at Path and on-demand probes at
// ProbePath on mux.
//
// A probe must carry the ProbeHeader: a browser sends a request with a
// header of its own only after a CORS preflight, which nothing here
// answers, so that no web page can make a node probe.
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
	select {
	case building <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "busy: other status requests are being answered; try again"})
		return
	}
	doc := func() Document {
		defer func() { <-building }()
		return s.Document(q)
	}()
	writeJSON(w, http.StatusOK, doc)
}

func (s Source) serveProbe(w http.ResponseWriter, r *http.Request) {
	if s.Prober == nil {
		writeJSON(w, http.StatusNotImplemented, Error{Error: "probing is off on this node"})
		return
	}
	if r.Header.Get(ProbeHeader) == "" {
		writeJSON(w, http.StatusForbidden, Error{Error: "a probe needs the " + ProbeHeader + " header (weftctl sends it)"})
		return
	}
	peer := r.URL.Query().Get("peer")
	if peer == "" {
		writeJSON(w, http.StatusBadRequest, Error{Error: "peer=: give a peer's subnet, an address in it, its public IP or its node name"})
		return
	}
	// A client that hangs up does not cut the probe short: a cut probe
	// would look like a peer that did not answer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.Prober.Config().Timeout+5*time.Second)
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
