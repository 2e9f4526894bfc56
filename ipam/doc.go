// Package ipam will hold sticky, crash-safe pod IP allocation on a store
// compatible with the host-local CNI plugin's on-disk layout, so that a pod
// restarted under the same namespace and name gets its previous IP back.
//
// Not yet implemented: the package has no API yet.
package ipam
