package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/agent"
	"github.com/weftnet/weft/internal/testutil"
	"github.com/weftnet/weft/lease"
	"github.com/weftnet/weft/localstate"
)

// withdrawLog records a Network's OnState and OnWithdraw calls, in order.
type withdrawLog struct {
	mu     sync.Mutex
	events []string
	// bad are calls that break the contract: a Withdrawal of another
	// lease than the last State's, or a State of a new lease while the
	// last one was never withdrawn.
	bad  []string
	last lease.Key // of the State in force; zero once withdrawn
	// store, if set, is the Network's local state, checked at each call:
	// a restart at that moment boots from it, so it must already hold
	// the lease a State names (when the State is of a lease the control
	// plane gave), and no longer hold a lease given up.
	store *localstate.Store
}

// checkStore records a local state that disagrees with the call being
// made; w.mu is held.
func (w *withdrawLog) checkStore(event string, want lease.Key, gone lease.Key) {
	if w.store == nil {
		return
	}
	st, err := w.store.Load()
	switch {
	case gone.IsValid() && err == nil && st.Lease.Key == gone:
		w.bad = append(w.bad, fmt.Sprintf("%s: the local state still holds %s, given up: a restart now boots from it", event, gone))
	case want.IsValid() && (err != nil || st.Lease.Key != want):
		w.bad = append(w.bad, fmt.Sprintf("%s: the local state holds %v (%v), not the lease announced: a restart now boots from another subnet", event, st.Lease.Key, err))
	}
}

func (w *withdrawLog) onState(st agent.State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last.IsValid() && w.last != st.Lease.Key {
		w.bad = append(w.bad, fmt.Sprintf("State %s while %s was never withdrawn", st.Lease.Key, w.last))
	}
	w.last = st.Lease.Key
	w.events = append(w.events, "state "+st.Lease.Key.String())
	w.checkStore("state "+st.Lease.Key.String(), st.Lease.Key, lease.Key{})
}

func (w *withdrawLog) onWithdraw(wd agent.Withdrawal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wd.Reason != agent.WithdrawStarting && wd.Lease != w.last {
		w.bad = append(w.bad, fmt.Sprintf("Withdrawal of %s (%s) while the State in force is %v", wd.Lease, wd.Reason, w.last))
	}
	w.last = lease.Key{}
	w.events = append(w.events, "withdraw "+wd.Lease.String()+" "+wd.Reason.String())
	if wd.Reason != agent.WithdrawStarting && wd.Reason != agent.WithdrawReplaced {
		w.checkStore("withdraw "+wd.Lease.String(), lease.Key{}, wd.Lease)
	}
}

func (w *withdrawLog) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.events...)
}

func (w *withdrawLog) waitFor(t *testing.T, prefix string) string {
	t.Helper()
	var found string
	testutil.WaitFor(t, 20*time.Second, "a "+prefix, func() bool {
		ev := w.snapshot()
		if len(ev) > 0 && strings.HasPrefix(ev[len(ev)-1], prefix) {
			found = ev[len(ev)-1]
			return true
		}
		return false
	})
	return found
}

// TestNetworkWithdraws: OnWithdraw comes first, at start, naming
// Previous; then each lease the node gives up is withdrawn before any
// State of another: lost to another node while the network is full (and
// the local state, which held it, is removed), and left out by a new
// network config. Each Withdrawal names the State in force.
func TestNetworkWithdraws(t *testing.T) {
	t.Parallel()
	const two = `{"Network": "10.244.0.0/22", "SubnetLen": 24, "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.2.0", "Backend": {"Type": "vxlan"}}`
	h, m, quiet, srv := oneHostOn(t, two)
	admin := srv.Client(t)
	store := localstate.NewStore(t.TempDir(), localstate.Identity{Network: "etcd /coreos.com/network", Node: h.Name}, 0)
	log := withdrawLog{store: store}
	previous := lease.Key{IPv4: netip.MustParsePrefix("10.244.2.0/24")}
	runNetwork(t, agent.NetworkConfig{
		Datapaths: vxlanOnly,
		Manager:   m, PublicIP: h.Addr.Addr(), Namespace: h.Handle, Logger: quiet, Previous: previous,
		LocalState: store, OnState: log.onState, OnWithdraw: log.onWithdraw,
	})
	first := log.waitFor(t, "state ")
	if ev := log.snapshot(); ev[0] != "withdraw 10.244.2.0-24 starting" {
		t.Fatalf("the first call is %q, want the Withdrawal at start of Previous", ev[0])
	}
	held := lease.Key{IPv4: netip.MustParsePrefix(strings.Replace(strings.TrimPrefix(first, "state "), "-", "/", 1))}
	testutil.WaitFor(t, 10*time.Second, "the local state to hold the lease", func() bool {
		st, err := store.Load()
		return err == nil && st.Lease.Key == held
	})

	// Taken by another node, and the other subnet too: no lease to be had.
	other := netip.MustParsePrefix("10.244.1.0/24")
	if held.IPv4 == other {
		other = netip.MustParsePrefix("10.244.2.0/24")
	}
	foreign := func(owner string) string {
		return `{"PublicIP":"172.30.0.99","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:99"},"WeftOwner":"` + owner + `"}`
	}
	ctx := context.Background()
	if _, err := admin.Put(ctx, "/coreos.com/network/subnets/"+lease.Key{IPv4: other}.String(), foreign("filler")); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "/coreos.com/network/subnets/"+held.String(), foreign("taker")); err != nil {
		t.Fatal(err)
	}
	if got, want := log.waitFor(t, "withdraw "), "withdraw "+held.String()+" lease lost"; got != want {
		t.Errorf("after the lease was taken: %q, want %q", got, want)
	}
	testutil.WaitFor(t, 10*time.Second, "the local state holding the lost lease to be removed", func() bool {
		_, err := store.Load()
		return errors.Is(err, fs.ErrNotExist)
	})

	// A subnet freed: the node takes it.
	if _, err := admin.Delete(ctx, "/coreos.com/network/subnets/"+lease.Key{IPv4: other}.String()); err != nil {
		t.Fatal(err)
	}
	if got, want := log.waitFor(t, "state "), "state "+(lease.Key{IPv4: other}).String(); got != want {
		t.Errorf("once a subnet was free: %q, want %q", got, want)
	}

	// A network that leaves it out.
	if _, err := admin.Put(ctx, "/coreos.com/network/config", `{"Network": "10.245.0.0/16", "Backend": {"Type": "vxlan"}}`); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, "state 10.245.")
	ev := log.snapshot()
	want := "withdraw " + (lease.Key{IPv4: other}).String() + " outside the network"
	if got := ev[len(ev)-2]; got != want {
		t.Errorf("before the State in the new network: %q, want %q", got, want)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.bad) > 0 {
		t.Errorf("contract broken: %v\nevents: %v", log.bad, log.events)
	}
	t.Logf("events: %v", log.events)
}
