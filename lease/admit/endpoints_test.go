package admit

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestEndpointPrefixes(t *testing.T) {
	lookup := func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if host == "etcd.example" && network == "ip" {
			return []netip.Addr{netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("fd00::7")}, nil
		}
		return nil, errors.New("no such host")
	}
	got, err := EndpointPrefixes(context.Background(), []string{
		"https://10.0.0.5:2379", "http://127.0.0.1:4001", "https://[fd00::5]:2379", "https://etcd.example:2379",
		"10.0.0.6", "10.0.0.8:2379", "https://missing.example:2379", "", "https://[fe80::1%25eth0]:2379",
	}, lookup)
	if err == nil || !errorsContains(err, "missing.example") {
		t.Errorf("err %v, want the unresolved name", err)
	}
	want := []string{"10.0.0.5/32", "127.0.0.1/32", "fd00::5/128", "10.0.0.7/32", "fd00::7/128", "10.0.0.6/32", "10.0.0.8/32", "fe80::1/128"}
	var gotS []string
	for _, p := range got {
		gotS = append(gotS, p.String())
	}
	if !slices.Equal(gotS, want) {
		t.Errorf("got %v, want %v", gotS, want)
	}
}

func errorsContains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
