package admit

import (
	"encoding/json"
	"strconv"

	"github.com/weftnet/weft/lease"
)

// The vxlan backend's wire format, as admission knows it: the rule this
// package applies is the vxlan backend's (lease.DefaultBackendType), the
// datapath contract's admission step (see lease.DatapathFactory).

// defaultVNI is flannel's VNI when Backend names none.
const defaultVNI = 1

// VNI returns the VXLAN network identifier net-conf.json's Backend object
// names, for Facts.VNI: flannel's 1 when it names none. A Backend the
// vxlan datapath refuses never reaches admission (the agent waits it out),
// so a malformed one gives the default here.
func VNI(backend json.RawMessage) int {
	var b struct{ VNI *int }
	if json.Unmarshal(backend, &b) != nil || b.VNI == nil {
		return defaultVNI
	}
	return *b.VNI
}

// MaxBackendData bounds AppendBackendData's output: the fixed text, a VNI
// of up to 20 characters and a MAC's 17.
const MaxBackendData = len(`{"VNI":,"VtepMAC":""}`) + 20 + 17

// AppendBackendData appends an admitted peer's backend data, as admission
// decoded it, to b: {"VNI":vni,"VtepMAC":"mac"}, byte for byte what
// json.Marshal makes of vxlan.BackendData, without its reflection and
// copies. The agent saves admitted peers' leases with it, so that
// admission admits them again from the local state.
func AppendBackendData(b []byte, vni int, mac lease.MAC) []byte {
	b = append(b, `{"VNI":`...)
	b = strconv.AppendInt(b, int64(vni), 10)
	b = append(b, `,"VtepMAC":"`...)
	const hex = "0123456789abcdef"
	for i, x := range mac {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return append(b, `"}`...)
}

// DatapathPeer is p as a datapath programs it (lease.DatapathPeer).
func (p Peer) DatapathPeer() lease.DatapathPeer {
	return lease.DatapathPeer{Subnet: p.Subnet, PublicIP: p.PublicIP, MAC: p.VtepMAC}
}
