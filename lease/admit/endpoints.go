package admit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// A Lookup resolves a host name to its addresses, as
// net.DefaultResolver.LookupNetIP does.
type Lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)

// EndpointPrefixes returns the host prefixes (/32, /128) of the addresses
// behind control-plane endpoints, for Facts.Protected: URLs such as
// "https://10.0.0.5:2379" or "https://etcd.example:2379", or bare
// host[:port]. Names are resolved with lookup once, when called; a name that
// does not resolve is reported in the error, joined, and the others are
// still returned.
func EndpointPrefixes(ctx context.Context, endpoints []string, lookup Lookup) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, e := range endpoints {
		host := endpointHost(strings.TrimSpace(e))
		if host == "" {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		addrs, err := lookup(ctx, "ip", host)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoint %q: %w", e, err))
			continue
		}
		for _, a := range addrs {
			a = a.Unmap().WithZone("")
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, errors.Join(errs...)
}

// endpointHost returns the host of a URL or host[:port], without brackets
// or zone.
func endpointHost(e string) string {
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return ""
		}
		e = u.Host
	}
	if h, _, err := net.SplitHostPort(e); err == nil {
		e = h
	}
	e = strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
	if i := strings.IndexByte(e, '%'); i >= 0 {
		e = e[:i]
	}
	return e
}
