//go:build linux

package wireguard

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/ownroute"
	"github.com/weftnet/weft/lease"
)

// maxRepairs bounds the repair history Status returns.
const maxRepairs = 256

// reconcile makes every device, its peers and routes as desired, and
// returns how many peers failed. A full one reads each device's peers back
// and corrects them; one for a change of desired peers writes the
// difference from what it last wrote, as a device with thousands of peers
// takes a while to read (a notification of drift, every resync and every
// retry make it full).
func (d *Datapath) reconcile(full bool) (int, error) {
	full = d.drift.Swap(false) || full
	d.work.Lock()
	defer d.work.Unlock()
	d.mu.Lock()
	cfg, peers, known, gen, closed := d.cfg, d.peers, d.known, d.gen, d.closed
	d.mu.Unlock()
	if closed || d.nl == nil {
		return 0, errors.New("wireguard: datapath is closed")
	}
	fs := &filterState{links: map[int]bool{cfg.Uplink: true, cfg.Uplink6: true}, names: map[string]bool{}, nets: map[netip.Prefix]bool{cfg.Network: true, cfg.IPv6Network: true}, proto: cfg.RouteProtocol}
	var errs []error
	var repairs []Repair
	failed := 0
	views := make([]DeviceStatus, 0, len(d.devs))
	for _, dev := range d.devs {
		fs.names[dev.spec.Name] = true
		st, r, err := d.reconcileDevice(dev, cfg, peers, known, full)
		if err != nil {
			errs = append(errs, err)
		}
		fs.links[dev.index] = true
		repairs = append(repairs, r...)
		failed += st.Failed
		views = append(views, st)
	}
	d.filter.Store(fs)
	err := errors.Join(errs...)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err, d.synced, d.view, d.lastSync = err, err == nil, views, time.Now()
	if err == nil {
		d.syncedGen = gen
	}
	if len(repairs) > 0 {
		d.repaired += len(repairs)
		d.repairs = append(slices.Clip(d.repairs), repairs...)
		if len(d.repairs) > maxRepairs {
			d.repairs = d.repairs[len(d.repairs)-maxRepairs:]
		}
	}
	return failed, err
}

// reconcileDevice is one device's reconcile. The status it returns keeps
// the last known peers when the device could not be read.
func (d *Datapath) reconcileDevice(dev *wgdev, cfg DatapathConfig, peers []lease.Lease, known, full bool) (DeviceStatus, []Repair, error) {
	st := dev.status
	st.Name, st.Port = dev.spec.Name, dev.spec.Port
	var repairs []Repair
	repair := func(what, why string) {
		d.log.Info("repaired datapath drift", "object", what, "was", why)
		repairs = append(repairs, Repair{Time: time.Now(), What: what, Why: why})
	}
	mtu, err := d.mtu(dev, cfg)
	if err != nil {
		return st, repairs, err
	}
	client, change, err := d.ensureLink(dev, mtu)
	st.Engine, st.EngineReason = d.engine, d.why
	if err != nil {
		return st, repairs, err
	}
	st.Index, st.MTU = dev.index, mtu
	if change != "" {
		if change != "created" {
			repair(dev.spec.Name, change)
		} else {
			d.log.Info("device created", "device", dev.spec.Name, "engine", d.engine)
		}
		// A new device has none of the old one's peers or routes: they
		// are programmed again, as replays, not repairs.
		clear(dev.written)
		dev.fresh, dev.read = true, false
		for _, o := range dev.owners {
			o.Forget()
		}
	}
	changes, err := d.ensureLinkState(dev, mtu)
	if err != nil {
		return st, repairs, err
	}
	var want []netip.Prefix
	if dev.spec.IPv4 && cfg.Lease.Key.IPv4.IsValid() {
		want = append(want, netip.PrefixFrom(cfg.Lease.Key.IPv4.Masked().Addr(), 32))
	}
	if dev.spec.IPv6 && cfg.Lease.Key.IPv6.IsValid() {
		want = append(want, netip.PrefixFrom(cfg.Lease.Key.IPv6.Masked().Addr(), 128))
	}
	if cfg.Lease.Key.IsValid() {
		more, err := d.ensureAddresses(dev, want)
		changes = append(changes, more...)
		if err != nil {
			return st, repairs, err
		}
	}
	if change == "" {
		for _, c := range changes {
			repair(dev.spec.Name, c)
		}
	}

	// The device's own key and port, and its peers as it has them: read
	// back in a full pass, else what was last written.
	fast := !full && !dev.fresh && change == "" && dev.read
	cur := map[Key]peerWant{}
	stats := map[Key]wgtypes.Peer{}
	if fast {
		maps.Copy(cur, dev.written)
		for _, p := range dev.status.Peers {
			stats[p.PublicKey] = wgtypes.Peer{LastHandshakeTime: p.LastHandshake, ReceiveBytes: p.ReceiveBytes, TransmitBytes: p.TransmitBytes}
		}
	} else {
		have0, err := client.Device(dev.spec.Name)
		if err != nil {
			return st, repairs, fmt.Errorf("wireguard: read %s: %w", dev.spec.Name, err)
		}
		if Key(have0.PrivateKey) != cfg.PrivateKey || have0.ListenPort != dev.spec.Port {
			pk, port := wgtypes.Key(cfg.PrivateKey), dev.spec.Port
			if err := client.ConfigureDevice(dev.spec.Name, wgtypes.Config{PrivateKey: &pk, ListenPort: &port}); err != nil {
				return st, repairs, fmt.Errorf("wireguard: set the key and port %d of %s: %w", port, dev.spec.Name, err)
			}
			if change == "" && have0.ListenPort != 0 {
				repair(dev.spec.Name, fmt.Sprintf("key %s port %d, want %s port %d", Key(have0.PublicKey), have0.ListenPort, d.pub, port))
			}
		}
		for _, p := range have0.Peers {
			cur[Key(p.PublicKey)] = have(p)
			stats[Key(p.PublicKey)] = p
		}
		dev.read = true
	}

	// Routes: the Network of each family carried, to the device.
	for _, o := range dev.owners {
		network := cfg.Network
		if o.IPv6 {
			network = cfg.IPv6Network
		}
		listed, err := o.List(d.nl)
		if err != nil {
			return st, repairs, fmt.Errorf("wireguard: %w", err)
		}
		res, err := o.Sync(d.nl, listed, map[netip.Prefix]ownroute.Route{network: {Dst: network, Dev: dev.index}})
		for _, r := range res.Repairs {
			repair(r, "gone or changed")
		}
		if err == nil {
			err = res.Failed[network]
		}
		if err != nil {
			return st, repairs, fmt.Errorf("wireguard: route %s to %s: %w", network, dev.spec.Name, err)
		}
	}
	if !known {
		return st, repairs, nil // leave the peers as they are until they are known
	}

	wantPeers, status := d.planPeers(dev.spec, cfg, peers)
	var cfgs []wgtypes.PeerConfig
	var why []string
	for k := range cur {
		if _, ok := wantPeers[k]; !ok {
			cfgs = append(cfgs, wgtypes.PeerConfig{PublicKey: wgtypes.Key(k), Remove: true})
			why = append(why, "")
			delete(dev.written, k)
		}
	}
	for k, w := range wantPeers {
		h, ok := cur[k]
		if ok && h.equal(w) {
			continue
		}
		cfgs = append(cfgs, w.config())
		r := ""
		if prev, was := dev.written[k]; was && prev.equal(w) {
			r = "missing"
			if ok {
				r = fmt.Sprintf("endpoint %s allowed %v keepalive %s", h.endpoint, h.allowed, h.keepalive)
			}
		}
		why = append(why, r)
	}
	refused := d.applyPeers(client, dev.spec.Name, cfgs)
	if dev.fresh && dev.user != nil && !cfg.noGreet {
		var keys []Key
		for k := range wantPeers {
			if refused[k] == nil {
				keys = append(keys, k)
			}
		}
		dev.user.greet(d.pub, keys)
	}
	dev.fresh = false
	for i, c := range cfgs {
		k := Key(c.PublicKey)
		if refused[k] == nil && !c.Remove && why[i] != "" {
			repair("peer "+k.String(), why[i])
		}
	}
	st.Peers, st.Failed = status, 0
	for i := range st.Peers {
		s := &st.Peers[i]
		if s.Reason == "" {
			if e := refused[s.PublicKey]; e != nil {
				s.Reason, s.Err = ReasonDevice, e.Error()
				delete(dev.written, s.PublicKey)
			} else {
				s.Programmed = true
				dev.written[s.PublicKey] = wantPeers[s.PublicKey]
				if p, ok := stats[s.PublicKey]; ok {
					s.LastHandshake, s.ReceiveBytes, s.TransmitBytes = p.LastHandshakeTime, p.ReceiveBytes, p.TransmitBytes
				}
			}
		}
		if !s.Programmed {
			st.Failed++
		}
	}
	d.logChanges(dev.status.Peers, st.Peers)
	dev.status = st
	return st, repairs, nil
}

// applyPeers writes cfgs in one call and, if the device refuses it, one
// peer at a time, so that a peer the device refuses is that peer's
// failure alone. It returns the refused peers' errors.
func (d *Datapath) applyPeers(client wgClient, name string, cfgs []wgtypes.PeerConfig) map[Key]error {
	if len(cfgs) == 0 {
		return nil
	}
	if err := client.ConfigureDevice(name, wgtypes.Config{Peers: cfgs}); err == nil {
		return nil
	}
	refused := map[Key]error{}
	for _, c := range cfgs {
		if err := client.ConfigureDevice(name, wgtypes.Config{Peers: []wgtypes.PeerConfig{c}}); err != nil {
			refused[Key(c.PublicKey)] = err
		}
	}
	return refused
}

// mtu is the device's MTU: the uplink's (or Config.MTU) minus Overhead.
func (d *Datapath) mtu(dev *wgdev, cfg DatapathConfig) (int, error) {
	base := cfg.Config.MTU
	if base == 0 {
		for _, idx := range []struct {
			on  bool
			idx int
		}{{dev.spec.IPv4, cfg.Uplink}, {dev.spec.IPv6, cfg.Uplink6}} {
			if !idx.on {
				continue
			}
			link, err := d.nl.LinkByIndex(idx.idx)
			if err != nil {
				return 0, fmt.Errorf("wireguard: uplink interface %d: %w", idx.idx, err)
			}
			if m := link.Attrs().MTU; base == 0 || m < base {
				base = m
			}
		}
	}
	mtu := base - Overhead
	if dev.spec.IPv6 && mtu < 1280 {
		return 0, fmt.Errorf("wireguard: MTU %d for %s is below IPv6's minimum of 1280; raise the underlay MTU", mtu, dev.spec.Name)
	}
	return mtu, nil
}

// logChanges logs a peer's failure once per distinct error, and its
// recovery once.
func (d *Datapath) logChanges(before, after []PeerStatus) {
	prev := make(map[lease.Key]string, len(before))
	for _, s := range before {
		prev[s.Key] = s.Err
	}
	for _, s := range after {
		p, had := prev[s.Key]
		switch {
		case s.Err != "" && s.Err != p:
			d.log.Warn("peer not programmed", "subnets", s.AllowedIPs, "endpoint", s.Endpoint, "reason", s.Reason, "err", s.Err)
		case s.Err == "" && had && p != "":
			d.log.Info("peer programmed after earlier failures", "subnets", s.AllowedIPs)
		}
	}
}
