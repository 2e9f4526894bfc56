// Package lease is the contract between a node's datapath and the source of
// its subnet: the network configuration (net-conf.json), leases and their
// attributes, the events a watch delivers, the subnet key codec, the subnet
// Allocator, and the Manager interface that lease sources implement.
//
// The package is pure: it parses, formats and computes, and performs no I/O.
// Package lease/etcd implements Manager on etcd v3, and package kube on
// Kubernetes Node objects.
//
// Everything here speaks flannel's formats, so that weft and flannel nodes can
// share one cluster:
//
//   - ParseConfig reads net-conf.json with flannel's field names and defaults.
//   - Attrs marshals to the JSON value flannel stores under a subnet key.
//   - Key's text form is flannel's etcd key suffix, such as 10.244.3.0-24.
//
// What a peer writes is bounded before it is kept: MaxValueSize,
// MaxBackendDataSize, MaxBackendTypeSize and MaxOwnerSize, several times
// what flannel's formats need; a lease over one is a *SizeError, and a
// lease source passes it on as Lease.Invalid, for admission to reject.
//
// Addresses and prefixes are net/netip values throughout. Errors wrap the
// sentinels declared here (ErrInvalidConfig, ErrInvalidKey, ErrInvalidAttrs, ErrTooLarge,
// ErrOutOfSubnets, ErrOutOfRange, ErrSubnetTaken, ErrLeaseLost) so that
// callers can test them with errors.Is; a config error is also a
// *ConfigError naming the field.
//
// Values here (Config, Key, Attrs, Lease, Batch) are plain data, safe to
// copy and share once made; the package keeps no reference to what it is
// given, except a View, which keeps the Leases it is fed (and their
// BackendData bytes, which it never modifies). A View and a Manager are
// safe for concurrent use; so is an Allocator (Pick with a shared rand.Rand aside). The optional interfaces a
// Manager may implement (HintReader, ReadyNotifier, ConditionReporter,
// Releaser, OwnLeaseReader) say with each what a consumer may expect.
package lease
