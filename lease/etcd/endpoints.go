package etcd

// Endpoints returns the etcd endpoints the Manager's client talks to, as
// URLs (lease.EndpointReporter): an agent keeps their addresses out of
// every peer's subnet (see admit.EndpointPrefixes), so that no lease can
// route the node's way to its control plane into the overlay.
func (m *Manager) Endpoints() []string { return m.client.Endpoints() }
