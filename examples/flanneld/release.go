package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/lease/etcd"
	"github.com/weftnet/weft/localstate"
	"github.com/weftnet/weft/subnetenv"
)

// releaseTimeout bounds --release-lease: a one-shot command that cannot
// reach etcd says so rather than waiting for ever.
const releaseTimeout = 30 * time.Second

// releaseLease is --release-lease: it finds the lease the daemon would
// keep (by node name, or for a lease flannel wrote, by public address)
// and releases it, conditional on it still being this node's.
func releaseLease(ctx context.Context, c config, log *slog.Logger) error {
	if c.kubeSubnetMgr {
		return errors.New("--release-lease is for etcd mode: in kube mode the subnet is the Node's PodCIDR, freed when the Node is deleted")
	}
	if c.node == "" {
		var err error
		if c.node, err = os.Hostname(); err != nil {
			return fmt.Errorf("no --node-name or NODE_NAME, and no hostname: %w", err)
		}
	}
	m, err := etcd.New(etcdOptions(c, log))
	if err != nil {
		return err
	}
	defer m.Close()
	req := lease.AcquireRequest{Attrs: lease.Attrs{PublicIP: c.publicIP, PublicIPv6: c.publicIPv6}}
	if !req.Attrs.PublicIP.IsValid() && !req.Attrs.PublicIPv6.IsValid() {
		found, err := findPublicAddrs(c, true, true)
		if err != nil {
			// Leases weft wrote are found by the node name alone; only
			// one flannel wrote needs the address.
			log.Warn("cannot find this node's public address; looking for its lease by node name only", "err", err)
		}
		req.Attrs.PublicIP, req.Attrs.PublicIPv6 = found.IPv4, found.IPv6
	}
	if f, err := subnetenv.Read(c.subnetFile); err == nil {
		req.Previous = lease.Key{IPv4: f.Subnet, IPv6: f.IPv6Subnet}
	}
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	if _, err := m.Config(ctx); err != nil {
		return fmt.Errorf("reading the network config at %s: %w", c.etcdPrefix, err)
	}
	l, found, err := m.OwnLease(ctx, req)
	if err != nil {
		return err
	}
	if !found {
		log.Info("this node holds no lease; nothing to release", "node", c.node)
		return removeState(c, log)
	}
	if err := m.Release(ctx, l); err != nil {
		if errors.Is(err, lease.ErrLeaseLost) {
			// Another node's now: nothing of this node's may name it.
			if rerr := removeState(c, log); rerr != nil {
				log.Error("could not remove the local state and subnet.env", "err", rerr)
			}
		}
		return err
	}
	log.Info("released this node's lease; its subnet is free", "node", c.node, "subnet", l.Key)
	return removeState(c, log)
}

// removeState deletes the local state, which holds the released lease: a
// later boot cut off from etcd must not route a subnet the node gave back;
// and subnet.env, which names it: a pod started before the next daemon
// holds a lease must not be given an address of a subnet that is free for
// any node to take.
func removeState(c config, log *slog.Logger) error {
	if removed, err := subnetenv.Remove(c.subnetFile); err != nil {
		return err
	} else if removed {
		log.Info("removed subnet.env", "path", c.subnetFile)
	}
	if c.stateDir == "" {
		return nil
	}
	store := localstate.NewStore(c.stateDir, stateIdentity(c), c.stateMaxAge)
	if err := store.Remove(); err != nil {
		return err
	}
	log.Info("removed the local state", "path", store.Path())
	return nil
}
