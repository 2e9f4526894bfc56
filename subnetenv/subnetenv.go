// Package subnetenv reads and writes subnet.env, the file through which a
// node agent tells flannel's CNI plugin the node's subnet, the overlay
// network and the MTU.
//
// The format is flannel's: KEY=VALUE lines, written in this order:
//
//	FLANNEL_NETWORK=10.244.0.0/16
//	FLANNEL_SUBNET=10.244.3.1/24
//	FLANNEL_IPV6_NETWORK=fd00:10:244::/56
//	FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64
//	FLANNEL_MTU=1450
//	FLANNEL_IPMASQ=true
//
// The IPv4 pair or the IPv6 pair may be absent, but not both. A subnet is
// written as its first usable address with the prefix length (10.244.3.1/24),
// which is what the CNI plugin expects, and read back as the subnet itself
// (10.244.3.0/24).
//
// Reading is strict about the keys it knows and tolerant of the rest: a
// malformed line, a duplicate known key, a value that does not parse and a
// missing required key are errors naming the path, the line and the key.
// Blank lines and lines starting with '#' are skipped. Unknown keys are
// ignored, as the CNI plugin ignores them, so that files from newer flannel
// versions or with keys appended by other tools still read; Write does not
// preserve them.
//
// Write is atomic: a reader sees the old file or the new one, never a partial
// or empty file, and a crash leaves one of the two.
//
// The file names only a subnet the node holds: an agent writes it once the
// node holds a lease, and removes it (Remove) when the node gives the
// lease up, so that flannel's CNI plugin, finding no file, refuses to
// allocate.
package subnetenv

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// DefaultPath is where flanneld writes subnet.env and flannel's CNI plugin
// reads it.
const DefaultPath = "/run/flannel/subnet.env"

// The keys, in the order Write emits them.
const (
	KeyNetwork     = "FLANNEL_NETWORK"
	KeySubnet      = "FLANNEL_SUBNET"
	KeyIPv6Network = "FLANNEL_IPV6_NETWORK"
	KeyIPv6Subnet  = "FLANNEL_IPV6_SUBNET"
	KeyMTU         = "FLANNEL_MTU"
	KeyIPMasq      = "FLANNEL_IPMASQ"
)

// MTU bounds: the IPv4 minimum link MTU, the IPv6 minimum and the largest
// value an interface MTU can hold.
const (
	minMTU     = 68
	minIPv6MTU = 1280
	maxMTU     = 65535
)

// ErrInvalid is matched by every error about the content of a subnet.env,
// whether found by Read, Parse, Validate or Write.
var ErrInvalid = errors.New("invalid subnet.env")

// File is the content of subnet.env. Network and Subnet are the IPv4 pair,
// IPv6Network and IPv6Subnet the IPv6 pair; a zero Prefix means absent.
type File struct {
	Network     netip.Prefix // the whole overlay network, e.g. 10.244.0.0/16
	Subnet      netip.Prefix // this node's subnet, e.g. 10.244.3.0/24
	IPv6Network netip.Prefix
	IPv6Subnet  netip.Prefix
	MTU         int  // the MTU pods should use: the VXLAN device's MTU
	IPMasq      bool // whether the agent masquerades pod traffic leaving the network
}

// An Error describes invalid subnet.env content.
type Error struct {
	Path string // the file, or "" when the content did not come from a file
	Line int    // 1-based line number, or 0 when the problem is not on one line
	Key  string // the key concerned, or ""
	Msg  string // what is wrong, and how to fix it
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
	} else {
		b.WriteString("subnet.env")
	}
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Read reads and parses the subnet.env at path. A missing file gives an error
// wrapping fs.ErrNotExist; invalid content gives an *Error naming path.
func Read(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("subnetenv: %w", err)
	}
	f, err := Parse(data)
	var e *Error
	if errors.As(err, &e) {
		e.Path = path
	}
	return f, err
}

// Write validates f and atomically replaces path with it, mode 0644,
// creating the parent directory (0755) if needed. An invalid f is an error
// and leaves path untouched.
func Write(path string, f File) error {
	data, err := f.MarshalText()
	if err != nil {
		return fmt.Errorf("subnetenv: not writing %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("subnetenv: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("subnetenv: %w", err)
	}
	return nil
}

// Remove removes the subnet.env at path, durably (the directory is
// synced), and reports whether there was one. An agent removes the file
// when its node stops holding the subnet it names: flannel's CNI plugin
// then fails an ADD ("open /run/flannel/subnet.env: no such file or
// directory") and the runtime retries it, rather than giving a pod an
// address in a subnet that may be another node's. A missing file is not
// an error.
func Remove(path string) (bool, error) { return takeAway(path, os.Remove(path)) }

// takeAway finishes a removal or move of the subnet.env at path whose
// result was err: it reports whether there was a file, and makes the
// change durable by syncing the directory.
func takeAway(path string, err error) (bool, error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("subnetenv: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return true, fmt.Errorf("subnetenv: %w", err)
	}
	return true, nil
}

// PreviousPath is where Withdraw keeps the subnet.env at path: beside it,
// under a name no CNI plugin reads.
func PreviousPath(path string) string { return path + ".previous" }

// Withdraw takes the subnet.env at path away from the CNI plugin, as
// Remove does, but keeps it at PreviousPath(path), so that the agent's
// next run can ask for the same subnet (ReadLast) even if it restarts
// before it holds a lease again: the subnet the file named is the one the
// node's pods are on. The move is one rename, durable once the directory
// is synced, so a reader sees the file whole or not at all. It reports
// whether there was a file; a missing one is not an error.
func Withdraw(path string) (bool, error) {
	return takeAway(path, os.Rename(path, PreviousPath(path)))
}

// ReadLast reads the subnet.env at path or, when there is none, the one
// Withdraw kept: the subnet this node last ran on, to ask for again
// (lease.AcquireRequest.Previous). Its error is the file's at path when
// neither can be read.
func ReadLast(path string) (File, error) {
	f, err := Read(path)
	if err == nil {
		return f, nil
	}
	if prev, perr := Read(PreviousPath(path)); perr == nil {
		return prev, nil
	}
	return File{}, err
}

// RemoveStale removes the temporary files that a write of path left when
// its process was killed mid-write (Write renames a temporary file over
// path), and returns their names. Call it at start, before the first
// Write.
func RemoveStale(path string) ([]string, error) {
	removed, err := atomicfile.RemoveStale(path)
	if err != nil {
		return removed, fmt.Errorf("subnetenv: %w", err)
	}
	return removed, nil
}

// MarshalText returns f in subnet.env format, or an *Error if f is not
// valid.
func (f File) MarshalText() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var b []byte
	line := func(key, value string) {
		b = append(b, key...)
		b = append(b, '=')
		b = append(b, value...)
		b = append(b, '\n')
	}
	if f.Subnet.IsValid() {
		line(KeyNetwork, f.Network.Masked().String())
		line(KeySubnet, gatewayForm(f.Subnet))
	}
	if f.IPv6Subnet.IsValid() {
		line(KeyIPv6Network, f.IPv6Network.Masked().String())
		line(KeyIPv6Subnet, gatewayForm(f.IPv6Subnet))
	}
	line(KeyMTU, strconv.Itoa(f.MTU))
	line(KeyIPMasq, strconv.FormatBool(f.IPMasq))
	return b, nil
}

// gatewayForm writes a subnet as its first usable address with the prefix
// length, as flanneld does.
func gatewayForm(p netip.Prefix) string {
	return netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits()).String()
}

// Validate reports whether f can be written and read back: at least one
// family, each subnet inside its network with room for pods, and an MTU the
// kernel accepts (at least 1280 when IPv6 is present).
func (f File) Validate() error {
	if !f.Subnet.IsValid() && !f.IPv6Subnet.IsValid() {
		return &Error{Key: KeySubnet, Msg: "is missing, and so is " + KeyIPv6Subnet + "; at least one must be set"}
	}
	type pair struct {
		netKey, subKey string
		network, sub   netip.Prefix
		is4            bool
	}
	for _, p := range []pair{
		{KeyNetwork, KeySubnet, f.Network, f.Subnet, true},
		{KeyIPv6Network, KeyIPv6Subnet, f.IPv6Network, f.IPv6Subnet, false},
	} {
		family := "IPv6"
		if p.is4 {
			family = "IPv4"
		}
		switch {
		case !p.network.IsValid() && !p.sub.IsValid():
			continue
		case !p.network.IsValid():
			return &Error{Key: p.netKey, Msg: "is missing; it must accompany " + p.subKey}
		case !p.sub.IsValid():
			return &Error{Key: p.subKey, Msg: "is missing; it must accompany " + p.netKey}
		case !isFamily(p.network.Addr(), p.is4):
			return &Error{Key: p.netKey, Msg: fmt.Sprintf("%s is not an %s network", p.network, family)}
		case !isFamily(p.sub.Addr(), p.is4):
			return &Error{Key: p.subKey, Msg: fmt.Sprintf("%s is not an %s subnet", p.sub, family)}
		case p.sub.Bits() > p.sub.Addr().BitLen()-2:
			return &Error{Key: p.subKey, Msg: fmt.Sprintf("%s leaves no address for pods; use a /%d or shorter", p.sub, p.sub.Addr().BitLen()-2)}
		case p.sub.Bits() < p.network.Bits() || !p.network.Contains(p.sub.Addr()):
			return &Error{Key: p.subKey, Msg: fmt.Sprintf("%s is outside %s %s", p.sub.Masked(), p.netKey, p.network.Masked())}
		}
	}
	switch {
	case f.MTU == 0:
		return &Error{Key: KeyMTU, Msg: "is missing"}
	case f.MTU < minMTU || f.MTU > maxMTU:
		return &Error{Key: KeyMTU, Msg: fmt.Sprintf("%d is outside %d..%d", f.MTU, minMTU, maxMTU)}
	case f.IPv6Subnet.IsValid() && f.MTU < minIPv6MTU:
		return &Error{Key: KeyMTU, Msg: fmt.Sprintf("%d is below %d, the minimum for IPv6", f.MTU, minIPv6MTU)}
	}
	return nil
}

func isFamily(a netip.Addr, is4 bool) bool {
	if is4 {
		return a.Is4()
	}
	return a.Is6() && !a.Is4In6() && a.Zone() == ""
}

// Parse parses subnet.env content; see the package documentation for the
// rules. Errors are *Error with Path empty.
func Parse(data []byte) (File, error) {
	var f File
	seen := make(map[string]int)                       // known key -> line
	text := strings.TrimPrefix(string(data), "\uFEFF") // a byte-order mark from an editor
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if t := strings.TrimSpace(line); t == "" || t[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return File{}, &Error{Line: n, Msg: fmt.Sprintf("%q is not a KEY=VALUE line", line)}
		}
		if !validKey(key) {
			return File{}, &Error{Line: n, Msg: fmt.Sprintf("key %q is not a valid name (letters, digits and '_')", key)}
		}
		parse, known := parsers[key]
		if !known {
			continue
		}
		if first, dup := seen[key]; dup {
			return File{}, &Error{Line: n, Key: key, Msg: fmt.Sprintf("is set again (first on line %d); keep one", first)}
		}
		seen[key] = n
		if msg := parse(&f, value); msg != "" {
			return File{}, &Error{Line: n, Key: key, Msg: fmt.Sprintf("value %q %s", value, msg)}
		}
	}
	if err := f.Validate(); err != nil {
		return File{}, err
	}
	if _, ok := seen[KeyIPMasq]; !ok {
		return File{}, &Error{Key: KeyIPMasq, Msg: "is missing"}
	}
	return f, nil
}

func validKey(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, c := range []byte(k) {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// parsers decode the value of each known key into f, returning "" or what is
// wrong with the value.
var parsers = map[string]func(f *File, value string) string{
	KeyNetwork:     prefixParser(func(f *File) *netip.Prefix { return &f.Network }, true, "10.244.0.0/16"),
	KeySubnet:      prefixParser(func(f *File) *netip.Prefix { return &f.Subnet }, true, "10.244.3.1/24"),
	KeyIPv6Network: prefixParser(func(f *File) *netip.Prefix { return &f.IPv6Network }, false, "fd00:10:244::/56"),
	KeyIPv6Subnet:  prefixParser(func(f *File) *netip.Prefix { return &f.IPv6Subnet }, false, "fd00:10:244:3::1/64"),
	KeyMTU: func(f *File, v string) string {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || v != strconv.Itoa(n) { // no sign, no leading zeros
			return "is not a positive whole number such as 1450"
		}
		f.MTU = n
		return ""
	},
	KeyIPMasq: func(f *File, v string) string {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "is not true or false"
		}
		f.IPMasq = b
		return ""
	},
}

func prefixParser(field func(*File) *netip.Prefix, is4 bool, example string) func(*File, string) string {
	family := "IPv6"
	if is4 {
		family = "IPv4"
	}
	return func(f *File, v string) string {
		p, err := netip.ParsePrefix(v)
		if err != nil || !isFamily(p.Addr(), is4) {
			return fmt.Sprintf("is not an %s CIDR such as %s", family, example)
		}
		*field(f) = p.Masked()
		return ""
	}
}
