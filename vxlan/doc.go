// Package vxlan will hold the overlay datapath: the VTEP device with a MAC
// that is stable across restarts, and a reconciler that owns every route,
// neighbour and FDB entry on it, computed from the leases of the node's
// peers.
//
// Not yet implemented: the package has no API yet.
package vxlan
