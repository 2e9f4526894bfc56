package vxlan

import "github.com/weftnet/weft/lease"

// BackendData is the vxlan backend's part of a lease, flannel's
// {"VNI":1,"VtepMAC":"0e:..."}: what peers need to reach this node's VTEP.
//
// It, DeriveMAC, Config and ParseConfig are the backend's wire types:
// pure code that builds for every GOOS, for tools that read leases and
// configs with no datapath. The MAC type is lease.MAC. The rest of the
// package is the datapath, and builds on Linux only.
type BackendData struct {
	VNI     int
	VtepMAC lease.MAC
}
