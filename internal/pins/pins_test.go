package pins_test

// These imports pin the dependency set in go.mod before the packages that use
// them exist, and prove on every test run that the pinned versions of
// client-go, the etcd client and server, and netlink compile together. Being
// in a test file, they are never linked into a consumer's binary. Remove each
// line once a package of ours imports the dependency.
import (
	_ "golang.org/x/sync/errgroup"
	_ "k8s.io/client-go/kubernetes"
)
