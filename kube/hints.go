package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/weftnet/weft/lease"
)

var _ lease.HintReader = (*Manager)(nil)

// Hints implements lease.HintReader: it reads this node's Node from the
// API server and returns what its annotations say: PublicIP and
// PublicIPv6 from node-public-ip and node-public-ipv6, the underlay
// addresses to use (zero if unset); BackendData and BackendV6Data from
// backend-data and backend-v6-data, whose VTEP MACs a datapath keeps. It
// fails naming the annotation if one is malformed, and while the Node
// cannot be read (not registered yet, the API server unreachable).
func (m *Manager) Hints(ctx context.Context) (lease.Hints, error) {
	n, err := m.getNode(ctx)
	if err != nil {
		return lease.Hints{}, err
	}
	var h lease.Hints
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
			return lease.Hints{}, fmt.Errorf("kube: node %s: %w", m.node, &annotationError{m.ann.key(f.name), v, "not an address of the family"})
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
