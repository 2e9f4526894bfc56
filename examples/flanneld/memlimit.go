package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// memLimitShare is the part of the container's memory limit the Go
// runtime is told it may use (GOMEMLIMIT): the rest is for what the
// runtime does not count, the binary's pages and the kernel's for the
// process. At a limit the collector works harder rather than let the
// kernel kill the daemon; well under it, nothing changes.
const memLimitShare = 0.9

// cgroupMemoryLimit returns the memory limit of the cgroup this process
// runs in, the tightest of its own and its ancestors', in bytes, and the
// file that sets it; ok is false where there is none. root is "/" but in
// tests. Both cgroup v2 (memory.max) and v1 (memory.limit_in_bytes, whose
// unlimited is a number near 2^63) are read. Inside a container the
// cgroup's path as /proc/self/cgroup gives it may not exist under the
// container's /sys/fs/cgroup, whose root is then the container's own
// cgroup: the walk up reaches it.
func cgroupMemoryLimit(root string) (limit int64, file string, ok bool) {
	data, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, "", false
	}
	consider := func(mount, path, name string) {
		for dir := filepath.Join(mount, path); ; dir = filepath.Dir(dir) {
			if v, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				s := strings.TrimSpace(string(v))
				if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < 1<<62 && (!ok || n < limit) {
					limit, file, ok = n, filepath.Join(dir, name), true
				}
			}
			if len(dir) <= len(mount) {
				return
			}
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			consider(filepath.Join(root, "sys/fs/cgroup"), f[2], "memory.max")
			consider(filepath.Join(root, "sys/fs/cgroup/unified"), f[2], "memory.max")
		case slices.Contains(strings.Split(f[1], ","), "memory"):
			consider(filepath.Join(root, "sys/fs/cgroup/memory"), f[2], "memory.limit_in_bytes")
		}
	}
	return limit, file, ok
}
