package pins_test

// These imports pin dependencies in go.mod before the packages that use them
// exist (client-go for kube), and prove on every test
// run that the pinned versions compile together with the etcd client and
// netlink the other packages import. Being in a test file, they are never
// linked into a consumer's binary. Remove each line once a package of ours
// imports the dependency.
import (
	_ "k8s.io/client-go/kubernetes"
)
