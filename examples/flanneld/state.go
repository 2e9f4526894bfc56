package main

import (
	"os"

	"github.com/weftnet/weft/localstate"
)

// stateIdentity is whose the local state is: the lease source and its
// namespace (the etcd prefix, or the annotation prefix in kube mode), and
// the node. A state of another is never booted from.
func stateIdentity(c config) localstate.Identity {
	if c.kubeSubnetMgr {
		return localstate.Identity{Network: "kube " + c.kubeAnnotationPrefix, Node: c.node}
	}
	return localstate.Identity{Network: "etcd " + c.etcdPrefix, Node: c.node}
}

// nodeOfState is the node the local state was written for, "" if there is
// none: in kube mode, where the node's name comes from the API server
// (the Pod's spec.nodeName), what a host cut off from it boots as. The
// state directory is the host's own, so the name is the one this host ran
// under.
func nodeOfState(c config) string {
	if c.stateDir == "" {
		return ""
	}
	data, err := os.ReadFile(localstate.Path(c.stateDir, stateIdentity(c)))
	if err != nil {
		return ""
	}
	st, err := localstate.Decode(data)
	if err != nil || st.Network != stateIdentity(c).Network {
		return ""
	}
	return st.Node
}
