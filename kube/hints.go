package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
)

// NodeHints are what this node's Node says about how to run its datapath,
// for an agent to read before it starts one.
type NodeHints struct {
	// PublicIP and PublicIPv6 are the node-public-ip and node-public-ipv6
	// annotations: which local address to use for VXLAN. Zero if unset.
	PublicIP, PublicIPv6 netip.Addr
	// BackendData and BackendV6Data are what the node's backend-data
	// annotations publish now, nil if nothing: an agent keeps the VTEP MAC
	// found there, so that peers' entries stay valid across a takeover
	// (say, from flannel, whose MACs were random).
	BackendData, BackendV6Data json.RawMessage
}

// Hints reads this node's Node from the API server and returns its hints.
// It fails naming the annotation if one is malformed.
func (m *Manager) Hints(ctx context.Context) (NodeHints, error) {
	n, err := m.getNode(ctx)
	if err != nil {
		return NodeHints{}, err
	}
	var h NodeHints
	for _, f := range []struct {
		name string
		dst  *netip.Addr
		v6   bool
	}{{annNodePublicIP, &h.PublicIP, false}, {annNodePublicIPv6, &h.PublicIPv6, true}} {
		v := n.Annotations[m.ann.key(f.name)]
		if v == "" {
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Is6() != f.v6 {
			return NodeHints{}, fmt.Errorf("kube: node %s: %w", m.node, &annotationError{m.ann.key(f.name), v, "not an address of the family"})
		}
		*f.dst = a
	}
	for _, f := range []struct {
		name string
		dst  *json.RawMessage
	}{{annBackendData, &h.BackendData}, {annBackendV6Data, &h.BackendV6Data}} {
		if v := n.Annotations[m.ann.key(f.name)]; v != "" && v != "null" && json.Valid([]byte(v)) {
			*f.dst = json.RawMessage(v)
		}
	}
	return h, nil
}
