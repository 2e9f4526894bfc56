package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/weftnet/weft/lease"
)

// DefaultAnnotationPrefix is flannel's annotation prefix.
const DefaultAnnotationPrefix = "flannel.alpha.coreos.com"

// Annotation names, joined to the prefix by annotations.key.
const (
	annBackendType       = "backend-type"
	annBackendData       = "backend-data"
	annBackendV6Data     = "backend-v6-data"
	annPublicIP          = "public-ip"
	annPublicIPv6        = "public-ipv6"
	annSubnetManager     = "kube-subnet-manager"
	annPublicIPOverwrite = "public-ip-overwrite"
	annPublicIPv6Overwr  = "public-ipv6-overwrite"
	annNodePublicIP      = "node-public-ip"
	annNodePublicIPv6    = "node-public-ipv6"
	annPodCIDRClaim      = "pod-cidr-claim" // weft's own: see Allocate
	annHostClaim         = "host-claim"     // weft's own: see holdName
)

// annotations builds annotation keys for one prefix. The same builder
// serves reads and writes, so a custom prefix can never be written one way
// and read another.
type annotations struct{ prefix string }

// key returns the annotation key for name, joined to the prefix as flannel
// joins them: a prefix without a "/" is a DNS name, joined with "/"
// ("flannel.alpha.coreos.com/backend-data"); one that ends in "/" or "-"
// is used as it is ("example.com/" gives "example.com/backend-data",
// "example.com/net-" gives "example.com/net-backend-data"); any other
// holding a "/" (a key holds only one) is joined with "-"
// ("example.com/net" gives "example.com/net-backend-data").
func (a annotations) key(name string) string {
	switch p := a.prefix; {
	case !strings.Contains(p, "/"):
		return p + "/" + name
	case strings.HasSuffix(p, "/"), strings.HasSuffix(p, "-"):
		return p + name
	default:
		return p + "-" + name
	}
}

// owned lists the annotations this package writes on its own node.
func (a annotations) owned() []string {
	return []string{a.key(annBackendType), a.key(annBackendData), a.key(annBackendV6Data),
		a.key(annPublicIP), a.key(annPublicIPv6), a.key(annSubnetManager)}
}

// read lists every annotation this package reads, to keep in the informer's
// cache: the rest of a Node's annotations are dropped there.
func (a annotations) read() []string {
	return append(a.owned(), a.key(annPublicIPOverwrite), a.key(annPublicIPv6Overwr),
		a.key(annNodePublicIP), a.key(annNodePublicIPv6), a.key(annPodCIDRClaim))
}

// encode returns the annotations that publish attrs, as a merge patch
// wants them: a family the node does not run (no public IP of it) has its
// annotations removed (nil), so that a family turned off stops being
// advertised.
func (a annotations) encode(attrs lease.Attrs) map[string]*string {
	m := map[string]*string{
		a.key(annBackendType):   ptr(attrs.BackendType),
		a.key(annSubnetManager): ptr("true"),
	}
	for _, f := range []struct {
		public, data string
		addr         netip.Addr
		raw          json.RawMessage
	}{
		{annPublicIP, annBackendData, attrs.PublicIP, attrs.BackendData},
		{annPublicIPv6, annBackendV6Data, attrs.PublicIPv6, attrs.BackendV6Data},
	} {
		m[a.key(f.public)], m[a.key(f.data)] = nil, nil
		if f.addr.IsValid() {
			m[a.key(f.public)] = ptr(f.addr.String())
			m[a.key(f.data)] = ptr("null")
			if len(f.raw) > 0 {
				m[a.key(f.data)] = ptr(string(f.raw))
			}
		}
	}
	return m
}

func ptr[T any](v T) *T { return &v }

// annotationError names the annotation that is wrong and why.
type annotationError struct {
	key, value, why string
}

func (e *annotationError) Error() string {
	return fmt.Sprintf("annotation %s=%s: %s", e.key, lease.Quote(e.value, 64), e.why)
}

// maxAnnotation bounds each annotation this package reads, as the
// informer's cache keeps it: the largest, backend-data, is bounded by
// lease.MaxBackendDataSize, and the others (addresses, a backend type, a
// claim of two CIDRs) are shorter still. The API server allows 256 KiB of
// annotations on a Node, which every node would keep of every other.
const maxAnnotation = lease.MaxBackendDataSize

// oversizeTag starts what the cache keeps of an annotation over
// maxAnnotation: its size, never its value. No address, CIDR or JSON
// starts with a NUL byte.
const oversizeTag = "\x00oversize:"

// bound returns an annotation's value as the cache keeps it: the value,
// or if it is over maxAnnotation, a stand-in that says how large it was.
func bound(v string) string {
	if len(v) <= maxAnnotation {
		return v
	}
	return oversizeTag + strconv.Itoa(len(v))
}

// oversize returns the *lease.SizeError for an annotation the cache keeps
// as a stand-in (see bound), or nil.
func oversize(key, v string) error {
	rest, ok := strings.CutPrefix(v, oversizeTag)
	if !ok && len(v) <= maxAnnotation {
		return nil
	}
	n, err := strconv.Atoi(rest)
	if !ok || err != nil {
		n = len(v)
	}
	return &lease.SizeError{Field: "annotation " + key, Size: n, Limit: maxAnnotation}
}

// Unwrap lets a malformed annotation be told from a transient failure.
func (e *annotationError) Unwrap() error { return lease.ErrInvalidAttrs }

// decode reads the attributes a node publishes, the overwrite annotations
// applied: a public-ip-overwrite (or its IPv6 form) replaces the address
// peers send to. The owner is the node's name. It fails naming the first
// malformed annotation.
//
// An annotation over its size limit fails it with a *lease.SizeError,
// whatever else is wrong, so that the node's lease is reported as such.
func (a annotations) decode(node string, ann map[string]string) (lease.Attrs, error) {
	for _, name := range []string{annBackendType, annBackendData, annBackendV6Data, annPublicIP, annPublicIPv6, annPublicIPOverwrite, annPublicIPv6Overwr} {
		if err := oversize(a.key(name), ann[a.key(name)]); err != nil {
			return lease.Attrs{}, err
		}
	}
	attrs := lease.Attrs{BackendType: ann[a.key(annBackendType)], Owner: node}
	for _, f := range []struct {
		name, overwrite string
		dst             *netip.Addr
		v6              bool
	}{
		{annPublicIP, annPublicIPOverwrite, &attrs.PublicIP, false},
		{annPublicIPv6, annPublicIPv6Overwr, &attrs.PublicIPv6, true},
	} {
		for _, name := range []string{f.name, f.overwrite} {
			v, ok := ann[a.key(name)]
			if !ok || v == "" {
				continue
			}
			addr, err := netip.ParseAddr(v)
			if err != nil || addr.Is4() == f.v6 || addr.Zone() != "" {
				fam := "an IPv4"
				if f.v6 {
					fam = "an IPv6"
				}
				return lease.Attrs{}, &annotationError{a.key(name), v, "not " + fam + " address"}
			}
			*f.dst = addr // the overwrite, read second, wins
		}
	}
	for _, f := range []struct {
		name string
		dst  *json.RawMessage
	}{
		{annBackendData, &attrs.BackendData},
		{annBackendV6Data, &attrs.BackendV6Data},
	} {
		v, ok := ann[a.key(f.name)]
		if !ok || v == "" || v == "null" {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(v), &obj); err != nil {
			return lease.Attrs{}, &annotationError{a.key(f.name), v, "not a JSON object: " + err.Error()}
		}
		*f.dst = json.RawMessage(v)
	}
	if err := attrs.Validate(); err != nil {
		return lease.Attrs{}, fmt.Errorf("annotations %s and %s: %w", a.key(annPublicIP), a.key(annBackendType), err)
	}
	// Within the limits above, but the lease type's own (MaxBackendTypeSize,
	// MaxOwnerSize) are tighter for some fields.
	if _, err := attrs.MarshalJSON(); errors.Is(err, lease.ErrTooLarge) {
		return lease.Attrs{}, err
	}
	return attrs, nil
}
