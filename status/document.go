package status

import (
	"encoding/json"
	"time"
)

// Version is the Document format's version.
const Version = 1

// A Document is one node's overlay status.
type Document struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"` // when it was made
	Node    string    `json:"node"`
	// Ready and Reason are the agent's readiness, what /readyz answers.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Condition is the control plane's, as the lease source reports it
	// ("etcd unreachable: ..."); "" when nothing is wrong.
	Condition string   `json:"condition,omitempty"`
	Lease     *Lease   `json:"lease,omitempty"`
	Config    *Config  `json:"config,omitempty"`
	Offline   *Offline `json:"offline,omitempty"`
	Families  []Family `json:"families"`
	Probing   *Probing `json:"probing,omitempty"`
	Summary   Summary  `json:"summary"`
	// Peers are those the query selects, up to its limit; Next, when
	// set, is Query.After for the next page.
	Peers []Peer `json:"peers"`
	Next  string `json:"next,omitempty"`
	// Repairs are the recent corrections of drift, of every family,
	// oldest first: up to 256 per datapath and per reconciler.
	Repairs []Repair `json:"repairs"`
}

// Lease is the node's lease.
type Lease struct {
	Subnet     string `json:"subnet,omitempty"`
	IPv6Subnet string `json:"ipv6Subnet,omitempty"`
	PublicIP   string `json:"publicIP,omitempty"`
	PublicIPv6 string `json:"publicIPv6,omitempty"`
	// From says how the node holds it: "acquired", "acquired the
	// previous subnet", "republished", "local state", or "lost;
	// acquiring again" (the devices keep the subnet meanwhile).
	From  string    `json:"from"`
	Since time.Time `json:"since"`
	// Expires is when it lapses as of its last renewal; absent if it
	// does not lapse or the source does not say.
	Expires *time.Time `json:"expires,omitempty"`
	// Renewals counts this node's renewals; absent if the source does
	// not renew (kube).
	Renewals *int64 `json:"renewals,omitempty"`
}

// Config is the network config in force.
type Config struct {
	// NetConf is the config as net-conf.json spells it.
	NetConf json.RawMessage `json:"netConf"`
	// Source is "live" (from the lease source) or "local state".
	Source string `json:"source"`
}

// Offline is present while the node runs from its local state.
type Offline struct {
	Since   time.Time `json:"since"`
	Written time.Time `json:"written"`
	// Lease and Peers say which still come from the state.
	Lease bool `json:"lease"`
	Peers bool `json:"peers"`
}

// A Family is one datapath: IPv4 or IPv6.
type Family struct {
	Family   string `json:"family"` // "ipv4" or "ipv6"
	Device   Device `json:"device"`
	Nexthops bool   `json:"nexthops"` // routes go through nexthop objects
	Synced   bool   `json:"synced"`
	Err      string `json:"error,omitempty"`
	// Peers counts the peers desired, Programmed and Failed how their
	// programming went, Rejected the leases admission keeps out.
	Peers      int  `json:"peers"`
	Programmed int  `json:"programmed"`
	Failed     int  `json:"failed"`
	Rejected   int  `json:"rejected"`
	LastSync   Sync `json:"lastSync"`
	Syncs      int  `json:"syncs"`
	Repaired   int  `json:"repaired"` // repairs ever made
}

// Device is a VXLAN device.
type Device struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	MAC   string `json:"mac"`
	MTU   int    `json:"mtu"`
	// TXChecksumOffload is the device's TX checksum offload; absent from
	// a daemon that does not manage it.
	TXChecksumOffload *Offload `json:"txChecksumOffload,omitempty"`
}

// Offload is a device's TX checksum offload: as configured, as that
// resolves on this kernel, and as read back from the device.
type Offload struct {
	Mode  string `json:"mode"`            // "auto", "on" or "off"
	Want  string `json:"want"`            // "on" or "off"
	State string `json:"state,omitempty"` // "on" or "off" as read back; "" unknown
	Why   string `json:"why"`             // e.g. "auto: off, as kernel 5.4 is before 5.7 ..."
	Err   string `json:"error,omitempty"` // the last failure to read or set it
}

// Sync is a full reconcile of a datapath's peers.
type Sync struct {
	Time            time.Time `json:"time"`
	DurationSeconds float64   `json:"durationSeconds"`
	Peers           int       `json:"peers"`
	Writes          int       `json:"writes"`
	Repairs         int       `json:"repairs"`
	Errors          int       `json:"errors"`
	Failed          int       `json:"failed"`
}

// Probing is the node-to-node probing's settings and aggregate results.
type Probing struct {
	Sample          int     `json:"sample"`
	IntervalSeconds float64 `json:"intervalSeconds"`
	TimeoutSeconds  float64 `json:"timeoutSeconds"`
	// PeriodSeconds is the time within which every current peer is
	// probed at least once.
	PeriodSeconds float64 `json:"periodSeconds"`
	Reachable     int     `json:"reachable"`
	Unreachable   int     `json:"unreachable"`
	Unprobed      int     `json:"unprobed"`
	// MTUBlackHoles counts the reachable peers whose path drops
	// full-size packets; UnderlayReachable and UnderlayUnreachable the
	// unreachable peers by what their underlay check found.
	MTUBlackHoles       int `json:"mtuBlackHoles"`
	UnderlayReachable   int `json:"underlayReachable"`
	UnderlayUnreachable int `json:"underlayUnreachable"`
	// UnderlayTCPPort is the TCP port the underlay check tries when ICMP
	// is not answered; absent: ICMP only.
	UnderlayTCPPort int `json:"underlayTCPPort,omitempty"`
}

// Summary counts over every peer, whatever the query selects.
type Summary struct {
	Peers       int `json:"peers"`      // admitted, all families
	Programmed  int `json:"programmed"` // every object in the kernel
	Failed      int `json:"failed"`     // the kernel refused an object
	Rejected    int `json:"rejected"`   // leases admission keeps out
	Unreachable int `json:"unreachable"`
	// Failing counts the peers Query.Failing selects: failed, or
	// unreachable or behind a path MTU black hole by their last probe.
	Failing int `json:"failing"`
	// RepairsLastHour counts the repairs of the last hour.
	RepairsLastHour int `json:"repairsLastHour"`
}

// Peer states.
const (
	StateProgrammed = "programmed" // every object it needs is in the kernel
	StatePending    = "pending"    // desired, not written yet
	StateFailed     = "failed"     // the kernel refused an object, or another program's is in the way
	StateRemoving   = "removing"   // no longer desired; its objects are being removed
	StateRejected   = "rejected"   // admission keeps its lease out
)

// A Peer is one peer lease of one family.
type Peer struct {
	Family   string `json:"family"`
	Subnet   string `json:"subnet"`
	PublicIP string `json:"publicIP,omitempty"`
	VtepMAC  string `json:"vtepMAC,omitempty"`
	Node     string `json:"node,omitempty"` // the lease's owner, if it names one
	State    string `json:"state"`
	// Reason and Detail say why admission rejects it (State rejected).
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Needs are the kernel objects the peer needs (nexthop, route,
	// neighbour, fdb), Missing those the last write could not make.
	Needs   []string `json:"needs,omitempty"`
	Missing []string `json:"missing,omitempty"`
	// Written is the peer as last written, when it differs from the
	// desired one (a change in flight).
	Written *Written `json:"written,omitempty"`
	Err     string   `json:"error,omitempty"`
	// Changed is when the desired peer last changed.
	Changed *time.Time `json:"changed,omitempty"`
	Probe   *Probe     `json:"probe,omitempty"`
}

// Written is what the kernel was last given for a peer.
type Written struct {
	PublicIP string `json:"publicIP"`
	VtepMAC  string `json:"vtepMAC"`
}

// Failing reports whether Query.Failing selects p: the kernel refused
// it, or its last probe got no reply or found a path MTU black hole.
func (p Peer) Failing() bool {
	return p.State == StateFailed || p.Probe != nil && (!p.Probe.Reachable || p.Probe.State == ProbeMTUBlackHole)
}

// Probe states: what a peer's last probe found (package probe's States).
const (
	ProbeReachable    = "reachable"      // answered, at full size too when last checked
	ProbeMTUBlackHole = "mtu-black-hole" // small probes answered, full-size ones lost
	ProbeOverlayDown  = "overlay-down"   // no reply over the overlay; the underlay reaches the peer
	ProbeUnderlayDown = "underlay-down"  // no reply over the overlay nor the underlay
	ProbeUnreachable  = "unreachable"    // no reply over the overlay; the underlay not checked
)

// Probe is a peer's last probe.
type Probe struct {
	Time       time.Time `json:"time"`
	Reachable  bool      `json:"reachable"`
	RTTSeconds float64   `json:"rttSeconds,omitempty"`
	Err        string    `json:"error,omitempty"`
	// Since is when its State last changed.
	Since time.Time `json:"since"`
	// State is one of the Probe states; absent from a daemon that does
	// not say (then Reachable alone tells).
	State string `json:"state,omitempty"`
	// Diagnosis says, when State is not reachable, what is wrong and the
	// fix, in one line.
	Diagnosis string    `json:"diagnosis,omitempty"`
	PathMTU   *PathMTU  `json:"pathMTU,omitempty"`
	Underlay  *Underlay `json:"underlay,omitempty"`
}

// PathMTU is what full-size probes found of a peer's path. Sizes are of
// the overlay's packets; the underlay's are Overhead larger.
type PathMTU struct {
	Checked   time.Time `json:"checked"`
	DeviceMTU int       `json:"deviceMTU"`
	Overhead  int       `json:"overhead"`
	OK        bool      `json:"ok"` // the device's MTU passed
	// Carries is the largest size known to pass, Drops the smallest
	// known lost, when not OK; Exact once they are one apart.
	Carries int  `json:"carries,omitempty"`
	Drops   int  `json:"drops,omitempty"`
	Exact   bool `json:"exact,omitempty"`
}

// Underlay is the check of a peer's public address, made when the overlay
// does not answer.
type Underlay struct {
	Time      time.Time `json:"time"`
	Reachable bool      `json:"reachable"`
	By        string    `json:"by,omitempty"` // what answered, or what was tried
	Err       string    `json:"error,omitempty"`
}

// A Repair is one correction of drift.
type Repair struct {
	Time   time.Time `json:"time"`
	Family string    `json:"family"`
	What   string    `json:"what"`
	Why    string    `json:"why"`
}

// A ProbeAnswer is the answer to an on-demand probe.
type ProbeAnswer struct {
	Peer   string `json:"peer"` // the subnet probed
	Addr   string `json:"addr"` // its VTEP address
	Node   string `json:"node,omitempty"`
	Result Probe  `json:"result"`
}

// An Error is what the handler answers instead of a Document.
type Error struct {
	Error string `json:"error"`
}
