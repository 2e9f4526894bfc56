package hostrules

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/internal/netnstest"
	"github.com/weftnet/weft/internal/testutil"
)

// TestMasqRulesReadBack applies the masquerade rules in both families and
// reads them back from the kernel, decoded into flannel's terms: the set
// and order must be flannel's FLANNEL-POSTRTG chain (v0.28, iptables
// mode), the kube-proxy mark rule first.
func TestMasqRulesReadBack(t *testing.T) {
	ns := netnstest.NewNamespace(t, "weft-masq")
	for _, tc := range []struct {
		network, subnet string
		want            []string
	}{
		{"10.244.0.0/16", "10.244.1.0/24", []string{
			"mark 0x4000/0x4000 return",
			"saddr 10.244.1.0/24 daddr 10.244.0.0/16 return",
			"saddr 10.244.0.0/16 daddr 10.244.1.0/24 return",
			"saddr != 10.244.0.0/16 daddr 10.244.1.0/24 return",
			"saddr 10.244.0.0/16 daddr != 224.0.0.0/4 masquerade fully-random",
			"saddr != 10.244.0.0/16 daddr 10.244.0.0/16 masquerade fully-random",
		}},
		{"fd00:10:244::/56", "fd00:10:244:1::/64", []string{
			"mark 0x4000/0x4000 return",
			"saddr fd00:10:244:1::/64 daddr fd00:10:244::/56 return",
			"saddr fd00:10:244::/56 daddr fd00:10:244:1::/64 return",
			"saddr != fd00:10:244::/56 daddr fd00:10:244:1::/64 return",
			"saddr fd00:10:244::/56 daddr != ff00::/8 masquerade fully-random",
			"saddr != fd00:10:244::/56 daddr fd00:10:244::/56 masquerade fully-random",
		}},
	} {
		network, subnet := netip.MustParsePrefix(tc.network), netip.MustParsePrefix(tc.subnet)
		// Twice: applying again must leave the same chain, not a longer one.
		for range 2 {
			if err := applyMasq(int(ns.Handle), network, subnet, true); err != nil {
				t.Fatal(err)
			}
		}
		got := readMasqRules(t, int(ns.Handle), network.Addr().Is6())
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: the kernel holds\n\t%q\nwant flannel's\n\t%q", tc.network, got, tc.want)
		}
		if n := masqRuleCount(int(ns.Handle), network.Addr().Is6()); n != len(tc.want) {
			t.Errorf("%s: masqRuleCount %d, want %d", tc.network, n, len(tc.want))
		}
	}
}

// readMasqRules reads the masquerade chain of one family back from the
// kernel and decodes each rule into flannel's terms.
func readMasqRules(t *testing.T, nsFD int, ipv6 bool) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		t.Fatal(err)
	}
	fam := nftables.TableFamilyIPv4
	if ipv6 {
		fam = nftables.TableFamilyIPv6
	}
	rules, err := c.GetRules(&nftables.Table{Name: MasqueradeTable, Family: fam}, &nftables.Chain{Name: "postrouting"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rules {
		out = append(out, decodeMasqRule(r.Exprs, ipv6))
	}
	return out
}

// decodeMasqRule renders the expressions weft's rules are made of; any
// other expression shows as "?" so that it cannot pass unnoticed.
func decodeMasqRule(exprs []expr.Any, ipv6 bool) string {
	var s, field string
	var mask []byte
	for _, e := range exprs {
		switch v := e.(type) {
		case *expr.Meta:
			if v.Key != expr.MetaKeyMARK {
				return "? meta"
			}
			field = "mark"
		case *expr.Payload:
			field = "daddr"
			if v.Offset == 12 || v.Offset == 8 {
				field = "saddr"
			}
		case *expr.Bitwise:
			mask = v.Mask
		case *expr.Cmp:
			op := ""
			if v.Op == expr.CmpOpNeq {
				op = "!= "
			}
			if field == "mark" {
				s += fmt.Sprintf("mark %s%#x/%#x ", op, binaryutil.NativeEndian.Uint32(v.Data), binaryutil.NativeEndian.Uint32(mask))
				continue
			}
			addr, _ := netip.AddrFromSlice(v.Data)
			bits := 0
			for _, b := range mask {
				for ; b != 0; b <<= 1 {
					bits++
				}
			}
			s += fmt.Sprintf("%s %s%s ", field, op, netip.PrefixFrom(addr, bits))
		case *expr.Verdict:
			if v.Kind != expr.VerdictReturn {
				return s + "? verdict"
			}
			s += "return"
		case *expr.Masq:
			s += "masquerade"
			if v.FullyRandom {
				s += " fully-random"
			}
		default:
			return s + fmt.Sprintf("? %T", e)
		}
	}
	return s
}

// TestMasqueradeSkipsKubeProxyMark sends from a pod address to an address
// outside the network twice, once in a packet marked 0x4000 (by a mangle
// rule, as kube-proxy's KUBE-MARK-MASQ marks what it will masquerade
// itself) and once unmarked, and reads the source address each arrives
// with at the destination: the marked one must keep the pod's address
// (weft's rules leave it to kube-proxy), the unmarked one must carry the
// node's. Both families.
func TestMasqueradeSkipsKubeProxyMark(t *testing.T) {
	seg := netnstest.NewSegment(t, 2)
	a, b := seg.Hosts[0], seg.Hosts[1]
	for _, tc := range []struct {
		network, subnet netip.Prefix
		pod, node, dst  netip.Addr
	}{
		{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.244.1.0/24"),
			netip.MustParseAddr("10.244.1.5"), a.Addr.Addr(), b.Addr.Addr()},
		{netip.MustParsePrefix("fd00:10:244::/56"), netip.MustParsePrefix("fd00:10:244:1::/64"),
			netip.MustParseAddr("fd00:10:244:1::5"), a.Addr6.Addr(), b.Addr6.Addr()},
	} {
		a.AddrAdd(t, "lo", netip.PrefixFrom(tc.pod, tc.pod.BitLen()))
		if err := applyMasq(int(a.Handle), tc.network, tc.subnet, true); err != nil {
			t.Fatal(err)
		}
		marked, unmarked := listenSources(t, b, tc.dst), listenSources(t, b, tc.dst)
		markPort(t, int(a.Handle), tc.dst.Is6(), marked.port)
		if got := marked.sourceOf(t, a, tc.pod); got != tc.pod {
			t.Errorf("%s: a packet marked 0x4000 arrived from %s, want the pod's %s (masqueraded by weft, a double NAT with kube-proxy's)", tc.network, got, tc.pod)
		}
		if got := unmarked.sourceOf(t, a, tc.pod); got != tc.node {
			t.Errorf("%s: an unmarked packet arrived from %s, want the node's %s (masqueraded)", tc.network, got, tc.node)
		}
	}
}

// sourceRecorder is a UDP socket in a namespace that reports where each
// datagram came from.
type sourceRecorder struct {
	conn *net.UDPConn
	port uint16
	dst  netip.AddrPort
}

func listenSources(t *testing.T, ns *netnstest.Host, addr netip.Addr) *sourceRecorder {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ap := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return &sourceRecorder{conn: conn, port: ap.Port(), dst: ap}
}

// sourceOf sends datagrams from src in ns to the recorder until one
// arrives (neighbour resolution and DAD take a moment), and returns the
// source address it arrived with.
func (r *sourceRecorder) sourceOf(t *testing.T, ns *netnstest.Host, src netip.Addr) netip.Addr {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(r.dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 64)
	var from netip.AddrPort
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("a datagram from %s to reach %s", src, r.dst), func() bool {
		if _, err := conn.Write([]byte("weft")); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
			t.Fatal(err)
		}
		r.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var err error
		_, from, err = r.conn.ReadFromUDPAddrPort(buf)
		return err == nil
	})
	return from.Addr().Unmap()
}

// markPort adds a table of the test's own in the namespace that marks
// locally sent UDP to port with kube-proxy's 0x4000 bit before routing,
// as an iptables mangle OUTPUT rule would.
func markPort(t *testing.T, nsFD int, ipv6 bool, port uint16) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(nsFD))
	if err != nil {
		t.Fatal(err)
	}
	fam := nftables.TableFamilyIPv4
	if ipv6 {
		fam = nftables.TableFamilyIPv6
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	table := c.AddTable(&nftables.Table{Name: "weft-test-mark-" + hex.EncodeToString(suffix), Family: fam})
	chain := c.AddChain(&nftables.Chain{
		Name: "output", Table: table, Type: nftables.ChainTypeRoute,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle,
	})
	dport := binary.BigEndian.AppendUint16(nil, port)
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dport},
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(0x4000)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("mark rule: %v", err)
	}
	t.Cleanup(func() {
		c.DelTable(table)
		c.Flush()
	})
}
