// Package kube will hold the lease.Manager on Kubernetes Node objects: the
// subnet from the Node's PodCIDRs, the attributes in flannel's node
// annotations, and diagnostics for a PodCIDR that is missing or outside the
// network.
//
// Not yet implemented: the package has no API yet.
package kube
