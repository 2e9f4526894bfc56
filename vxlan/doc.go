// Package vxlan is weft's overlay datapath: the VXLAN device (flannel.<VNI>)
// and the routes, neighbours and FDB entries that carry traffic to each
// peer's subnet.
//
// So far it parses the vxlan settings of net-conf.json's Backend object;
// the device and the reconciler follow.
package vxlan
