//go:build linux

package status

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Register serves the Document at Path and on-demand probes at
// ProbePath on mux, within s.Capacity, or, if that is nil, a Capacity of
// DefaultCapacity of this call's own.
//
// A probe must carry the ProbeHeader: a browser sends a request with a
// header of its own only after a CORS preflight, which nothing here
// answers, so that no web page can make a node probe.
func (s Source) Register(mux *http.ServeMux) {
	if s.Capacity == nil {
		s.Capacity = NewCapacity(DefaultCapacity)
	}
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
	// A page past MaxPage is cut there, with its Next: a client that
	// follows Next (Client.AllPeers) sees every peer all the same.
	if s.MaxPage > 0 && (q.Limit == 0 || q.Limit > s.MaxPage) {
		q.Limit = s.MaxPage
	}
	// The slot is held until the answer is written (or its write
	// deadline passes): an answer a client does not read holds memory.
	if !s.Capacity.take(w) {
		return
	}
	defer s.Capacity.release()
	writeJSON(w, http.StatusOK, s.Document(q))
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
	// A probe takes a slot too: the prober runs a few on-demand probes at
	// once for every server, and one server's clients must leave the
	// others theirs.
	if !s.Capacity.take(w) {
		return
	}
	defer s.Capacity.release()
	// A client that hangs up does not cut the probe short: a cut probe
	// would look like a peer that did not answer.
	wait := s.Prober.Config().Timeout + 5*time.Second
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), wait)
	defer cancel()
	// A server's write deadline (Limits.WriteTimeout) counts from the
	// request: the answer gets its own time once the probe is done.
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(wait + 10*time.Second))
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
// snapshot by then. An answer that cannot be written in time is dropped
// with its connection, by the server's write deadline.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
