// Package cgroups puts devbox containers into Linux control groups and
// applies their memory, CPU and pids limits and their device rules (the v1
// devices controller, or a BPF device program on cgroup2).
//
// It works on the three layouts a Linux host may have (see [Layout]): pure
// cgroup v2, pure cgroup v1, and the v1/v2 hybrid in which the v1
// controllers sit at /sys/fs/cgroup/<controller> and a controller-less
// cgroup2 sits at /sys/fs/cgroup/unified. Each controller is used where it
// is mounted, so a hybrid host is never a reason to refuse a container.
//
// A container's life with this package:
//
//	cg, err := cgroups.New("devbox/"+id, spec.Linux.Resources) // before the child exists
//	attr.UseCgroupFD, attr.CgroupFD = cg.FD() >= 0, cg.FD()     // clone3(CLONE_INTO_CGROUP)
//	... start the child, then, before it execs the user's program:
//	err = cg.Add(pid)                                           // the hierarchies FD can't cover
//	cg.Close()                                                  // the FD is not needed any more
//	... wait; then cg.OOMKilled(), cg.Kill(), cg.Delete()
//
// [ParseMemory] and [ParseCPUs] parse docker's --memory and --cpus flag
// spellings; they build on every OS so that the CLI can share them. The
// rest of the package is Linux only.
package cgroups
