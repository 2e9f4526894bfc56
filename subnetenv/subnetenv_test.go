package subnetenv

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

var (
	v4File   = File{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.1.0/24"), MTU: 1450, IPMasq: true}
	dualFile = File{
		Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.1.0/24"),
		IPv6Network: pfx("2001:cafe:42::/56"), IPv6Subnet: pfx("2001:cafe:42:1::/64"),
		MTU: 1450, IPMasq: true,
	}
	v6File = File{IPv6Network: pfx("fd00:10::/48"), IPv6Subnet: pfx("fd00:10:0:7::/64"), MTU: 1430}
)

// TestFlannelFiles reads subnet.env exactly as flanneld writes it, and checks
// that Write reproduces it byte for byte.
func TestFlannelFiles(t *testing.T) {
	for file, want := range map[string]File{
		"testdata/flannel/subnet.env":           v4File,
		"testdata/flannel/subnet-dualstack.env": dualFile,
	} {
		got, err := Read(file)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("Read(%s) = %+v, want %+v", file, got, want)
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "subnet.env")
		if err := Write(out, got); err != nil {
			t.Fatal(err)
		}
		written, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if string(written) != string(raw) {
			t.Errorf("Write differs from flanneld's %s:\n%s\nwant\n%s", file, written, raw)
		}
	}
}

func TestWriteFormat(t *testing.T) {
	tests := []struct {
		f    File
		want string
	}{
		{v4File, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"},
		{v6File, "FLANNEL_IPV6_NETWORK=fd00:10::/48\nFLANNEL_IPV6_SUBNET=fd00:10:0:7::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n"},
		{dualFile, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"},
		// A subnet given with host bits is written in gateway form all the same.
		{File{Network: pfx("10.0.0.0/8"), Subnet: pfx("10.9.8.77/26"), MTU: 1500}, "FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.9.8.65/26\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"},
	}
	for _, tt := range tests {
		got, err := tt.f.MarshalText()
		if err != nil {
			t.Errorf("%+v: %v", tt.f, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("MarshalText(%+v):\n%s\nwant\n%s", tt.f, got, tt.want)
		}
	}
}

func TestWriteCreatesDirAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "flannel", "subnet.env")
	if err := Write(path, v4File); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	got, err := Read(path)
	if err != nil || got != v4File {
		t.Errorf("Read back %+v, %v", got, err)
	}
}

func TestWriteInvalidLeavesFileAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	if err := Write(path, v4File); err != nil {
		t.Fatal(err)
	}
	bad := v4File
	bad.MTU = 0
	err := Write(path, bad)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Write(invalid) = %v, want ErrInvalid", err)
	}
	if want := "subnetenv: not writing " + path + ": subnet.env: FLANNEL_MTU is missing"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if got, err := Read(path); err != nil || got != v4File {
		t.Errorf("file changed after a refused write: %+v, %v", got, err)
	}
	if err := Write(filepath.Join(dir, "new", "subnet.env"), bad); err == nil {
		t.Error("invalid write to a new path succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("refused write created the directory")
	}
}

func TestReadMissing(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "nope.env"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Error("a missing file is reported as invalid content")
	}
}

func TestParseTolerates(t *testing.T) {
	tests := []struct {
		name, in string
		want     File
	}{
		{"comments, blanks, unknown keys, CRLF",
			"# written by hand\n\nFLANNEL_NETWORK=10.244.0.0/16\r\nFLANNEL_SUBNET=10.244.1.1/24\nEXTRA_KEY=whatever=it is\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true",
			v4File},
		{"byte-order mark", "\uFEFFFLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", v4File},
		{"any address inside the subnet", "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.0/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=1\n", v4File},
		{"order does not matter", "FLANNEL_IPMASQ=TRUE\nFLANNEL_MTU=1450\nFLANNEL_SUBNET=10.244.1.77/24\nFLANNEL_NETWORK=10.244.0.0/16\n", v4File},
		{"network with host bits is masked", "FLANNEL_NETWORK=10.244.9.9/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", v4File},
		{"ipv6 only", "FLANNEL_IPV6_NETWORK=fd00:10::/48\nFLANNEL_IPV6_SUBNET=fd00:10:0:7::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n", v6File},
	}
	for _, tt := range tests {
		got, err := Parse([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestReadErrors(t *testing.T) {
	const good = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	tests := []struct {
		in, key, want string
	}{
		{"", KeySubnet, "FLANNEL_SUBNET is missing, and so is FLANNEL_IPV6_SUBNET; at least one must be set"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n", KeyIPMasq, "FLANNEL_IPMASQ is missing"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPMASQ=true\n", KeyMTU, "FLANNEL_MTU is missing"},
		{"FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", KeyNetwork, "FLANNEL_NETWORK is missing; it must accompany FLANNEL_SUBNET"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\nFLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:1::1/64\n", KeySubnet, "FLANNEL_SUBNET is missing; it must accompany FLANNEL_NETWORK"},
		{good + "garbage\n", "", `:5: "garbage" is not a KEY=VALUE line`},
		{good + "=x\n", "", `:5: key "" is not a valid name (letters, digits and '_')`},
		{good + "FLANNEL MTU=9\n", "", `:5: key "FLANNEL MTU" is not a valid name (letters, digits and '_')`},
		{good + " FLANNEL_MTU=1450\n", "", `:5: key " FLANNEL_MTU" is not a valid name (letters, digits and '_')`},
		{good + "FLANNEL_MTU=1400\n", KeyMTU, `:5: FLANNEL_MTU is set again (first on line 3); keep one`},
		{"FLANNEL_NETWORK=10.244.0.0\n", KeyNetwork, `:1: FLANNEL_NETWORK value "10.244.0.0" is not an IPv4 CIDR such as 10.244.0.0/16`},
		{"FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16\n", KeyNetwork, `:1: FLANNEL_NETWORK value "10.244.0.0/16,10.245.0.0/16" is not an IPv4 CIDR such as 10.244.0.0/16`},
		{"FLANNEL_SUBNET=fd00::1/64\n", KeySubnet, `:1: FLANNEL_SUBNET value "fd00::1/64" is not an IPv4 CIDR such as 10.244.3.1/24`},
		{"FLANNEL_IPV6_SUBNET=10.1.1.1/24\n", KeyIPv6Subnet, `:1: FLANNEL_IPV6_SUBNET value "10.1.1.1/24" is not an IPv6 CIDR such as fd00:10:244:3::1/64`},
		{"FLANNEL_SUBNET= 10.244.1.1/24\n", KeySubnet, `:1: FLANNEL_SUBNET value " 10.244.1.1/24" is not an IPv4 CIDR such as 10.244.3.1/24`},
		{"FLANNEL_MTU=abc\n", KeyMTU, `:1: FLANNEL_MTU value "abc" is not a positive whole number such as 1450`},
		{"FLANNEL_MTU=-1\n", KeyMTU, `:1: FLANNEL_MTU value "-1" is not a positive whole number such as 1450`},
		{"FLANNEL_MTU=+1450\n", KeyMTU, `:1: FLANNEL_MTU value "+1450" is not a positive whole number such as 1450`},
		{"FLANNEL_MTU=01450\n", KeyMTU, `:1: FLANNEL_MTU value "01450" is not a positive whole number such as 1450`},
		{"FLANNEL_IPMASQ=yes\n", KeyIPMasq, `:1: FLANNEL_IPMASQ value "yes" is not true or false`},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.245.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", KeySubnet, "FLANNEL_SUBNET 10.245.1.0/24 is outside FLANNEL_NETWORK 10.244.0.0/16"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.0.0/8\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", KeySubnet, "FLANNEL_SUBNET 10.0.0.0/8 is outside FLANNEL_NETWORK 10.244.0.0/16"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/31\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", KeySubnet, "FLANNEL_SUBNET 10.244.1.0/31 leaves no address for pods; use a /30 or shorter"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=67\nFLANNEL_IPMASQ=true\n", KeyMTU, "FLANNEL_MTU 67 is outside 68..65535"},
		{"FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=70000\nFLANNEL_IPMASQ=true\n", KeyMTU, "FLANNEL_MTU 70000 is outside 68..65535"},
		{"FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:1::1/64\nFLANNEL_MTU=1200\nFLANNEL_IPMASQ=true\n", KeyMTU, "FLANNEL_MTU 1200 is below 1280, the minimum for IPv6"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "subnet.env")
		if err := os.WriteFile(path, []byte(tt.in), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Read(path)
		if err == nil {
			t.Errorf("Read(%q) = %+v, want error", tt.in, f)
			continue
		}
		want := path + tt.want
		if tt.want[0] != ':' {
			want = path + ": " + tt.want
		}
		if err.Error() != want {
			t.Errorf("Read(%q):\n got %s\nwant %s", tt.in, err, want)
		}
		var e *Error
		if !errors.As(err, &e) || e.Key != tt.key || !errors.Is(err, ErrInvalid) {
			t.Errorf("Read(%q): error %#v, want key %q matching ErrInvalid", tt.in, e, tt.key)
		}
	}
}

func TestValidateRejectsWrongFamilies(t *testing.T) {
	for _, f := range []File{
		{Network: pfx("fd00::/48"), Subnet: pfx("10.0.1.0/24"), MTU: 1450},
		{Network: pfx("10.0.0.0/8"), Subnet: pfx("fd00::/64"), MTU: 1450},
		{IPv6Network: pfx("10.0.0.0/8"), IPv6Subnet: pfx("fd00::/64"), MTU: 1450},
		{IPv6Network: pfx("fd00::/48"), IPv6Subnet: pfx("::ffff:10.0.0.0/120"), MTU: 1450},
	} {
		if err := f.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", f, err)
		}
	}
}

func ExampleWrite() {
	dir, err := os.MkdirTemp("", "subnetenv")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "subnet.env")

	f := File{
		Network: netip.MustParsePrefix("10.244.0.0/16"),
		Subnet:  netip.MustParsePrefix("10.244.3.0/24"),
		MTU:     1450,
		IPMasq:  true,
	}
	if err := Write(path, f); err != nil {
		panic(err)
	}
	data, _ := os.ReadFile(path)
	fmt.Print(string(data))
	back, _ := Read(path)
	fmt.Println(back.Subnet)
	// Output:
	// FLANNEL_NETWORK=10.244.0.0/16
	// FLANNEL_SUBNET=10.244.3.1/24
	// FLANNEL_MTU=1450
	// FLANNEL_IPMASQ=true
	// 10.244.3.0/24
}

// TestRemove: Remove takes the file away and says so; a missing file is
// no error; a path it cannot remove (a non-empty directory) is one, naming
// the path.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	f := File{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24"), MTU: 1450}
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	if removed, err := Remove(path); err != nil || !removed {
		t.Fatalf("Remove: %v %v", removed, err)
	}
	if _, err := Read(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read after Remove: %v", err)
	}
	if removed, err := Remove(path); err != nil || removed {
		t.Fatalf("Remove of a missing file: %v %v", removed, err)
	}
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Remove(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Remove of a non-empty directory: %v", err)
	}
}

// TestWithdrawKeepsTheLastSubnet: a withdrawn subnet.env is gone for the
// CNI plugin, whole, and ReadLast still gives the subnet the node's pods
// are on, until a new subnet.env is written.
func TestWithdrawKeepsTheLastSubnet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "subnet.env")
	if _, err := ReadLast(path); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("ReadLast with neither file: %v, want the missing subnet.env named", err)
	}
	if withdrawn, err := Withdraw(path); err != nil || withdrawn {
		t.Fatalf("Withdraw with no file: %v %v", withdrawn, err)
	}
	first := File{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.0/24"), MTU: 1450}
	if err := Write(path, first); err != nil {
		t.Fatal(err)
	}
	if withdrawn, err := Withdraw(path); err != nil || !withdrawn {
		t.Fatalf("Withdraw: %v %v", withdrawn, err)
	}
	if _, err := Read(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read after Withdraw: %v, want no file for the CNI plugin", err)
	}
	if got, err := ReadLast(path); err != nil || got.Subnet != first.Subnet {
		t.Fatalf("ReadLast after Withdraw: %+v %v, want %v", got, err, first.Subnet)
	}
	// A second withdrawal, the file already gone, keeps the copy.
	if withdrawn, err := Withdraw(path); err != nil || withdrawn {
		t.Fatalf("Withdraw again: %v %v", withdrawn, err)
	}
	if got, err := ReadLast(path); err != nil || got.Subnet != first.Subnet {
		t.Fatalf("ReadLast after a second Withdraw: %+v %v", got, err)
	}
	next := first
	next.Subnet = netip.MustParsePrefix("10.244.9.0/24")
	if err := Write(path, next); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadLast(path); err != nil || got.Subnet != next.Subnet {
		t.Fatalf("ReadLast with a new subnet.env: %+v %v, want %v", got, err, next.Subnet)
	}
}
