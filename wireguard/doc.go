// Package wireguard is weft's WireGuard datapath, flannel's wireguard
// backend: pod traffic between nodes is encrypted in WireGuard tunnels.
//
// # Wire format (flannel v0.28's)
//
// A lease has BackendType "wireguard" and, per family the node runs,
// BackendData (IPv4) and BackendV6Data (IPv6) of the form
//
//	{"PublicKey":"<base64>","Port":51820}
//
// Config.Attrs builds it; ParseBackendData reads it, a missing Port
// meaning the receiver's own listen port for the family (flannel before
// v0.18 published none). net-conf.json's Backend holds ListenPort (51820),
// ListenPortV6 (51821), MTU, PSK, PersistentKeepaliveInterval (seconds)
// and Mode (separate, auto, ipv4, ipv6): see Config and ParseConfig.
//
// # Devices and routes
//
// In separate mode (the default) each family has its device, flannel-wg
// for IPv4 on ListenPort and flannel-wg-v6 for IPv6 on ListenPortV6; in
// the other modes one device, flannel-wg, carries both, and each peer's
// endpoint is of the family the mode picks. A device holds the node's
// subnet's network address as a /32 (/128), a route sends the whole
// Network (IPv6Network) to it, and each peer has its subnet(s) as
// AllowedIPs and PublicIP:Port (PublicIPv6) as endpoint. The MTU is the
// uplink's, or Backend.MTU, minus Overhead (80).
//
// # Keys
//
// The private key lives in a file (KeyFile: $WIREGUARD_KEY_FILE, flannel's
// variable, or wireguard.key in weft's state directory), mode 0600,
// created once by LoadOrCreateKey and never replaced behind the operator's
// back. flannel keeps it in /run/flannel/wgkey, a tmpfs, so its key is new
// after every reboot; weft's survives reboots, so that a node rebooted
// while cut off from the control plane keeps the key its peers know.
// Rotation is an explicit operator action: RotateKey (or removing the
// file) and restarting the agent, which publishes the new key in its
// lease; each peer takes it when it sees the lease change.
//
// # Admission
//
// Admit is the backend's rule for one family of a peer lease: the data
// must name a usable public key that is not this node's own; it returns
// the key as the peer's uniqueness key, so that admission admits only the
// oldest lease with a key. A lease carrying another node's key would
// otherwise take that node's AllowedIPs and endpoint (WireGuard knows a
// peer by its key alone). The Datapath applies the same rules itself,
// oldest lease first, with subnets kept inside the Network and apart from
// this node's and older peers', so that it is safe given leases no
// admission saw; a peer refused by rule is listed with its reason.
//
// # Engines
//
// The kernel's WireGuard is used where the kernel has it; where it refuses
// the device (no module), or when asked (EngineUserspace), wireguard-go
// runs in this process on a TUN device of the same name, its sockets
// opened in the datapath's namespace. Both are configured through the same
// wgctrl calls (wgtypes.Config; the user-space device through WireGuard's
// configuration protocol, as wgctrl speaks it to wireguard-go), and
// everything above them is the same code. DeviceStatus.Engine says which
// runs and why. With DatapathConfig.UAPIDir, a user-space device serves
// wireguard-go's configuration socket, so that `wg show` sees it as it sees
// a kernel device. A user-space device made anew greets its peers (starts a
// handshake), so that peers still holding a session with its previous run
// reach it at once rather than after their rekey timeout.
//
// # Reconciling
//
// A Datapath keeps the devices (type, MTU, up, addresses, key and port),
// their peers (keys, AllowedIPs, endpoints, keepalive, preshared key) and
// routes as desired, level-based: it reconciles when the desired state
// changes, when a link, address or route notification departs from it (a
// device deleted by hand is made again with its peers), and every
// ResyncInterval, which is what finds peers changed behind its back (`wg
// set`), as WireGuard sends no notification for them. A peer the device
// refuses is that peer's failure alone: listed with ReasonDevice and
// retried. Routes are owned like vxlan's: tagged with the route protocol
// (157), another program's route in the way reported, never overwritten.
//
// # Concurrency, errors, lifetimes
//
// A Datapath's methods are safe for concurrent use, Run included; Run
// returns only when its context ends, and a second Run is refused. A
// reconcile error (a device that cannot be made, an address or route the
// kernel refuses) leaves the datapath unsynced with the reason in Status.
// Close releases the sockets; kernel devices, peers and routes stay in
// place, so that a restarting agent drops no traffic, while a user-space
// device, which lives in this process, stops with it. The namespace
// handle stays the caller's.
//
// Only a binary that imports this package links wireguard-go and wgctrl.
package wireguard
