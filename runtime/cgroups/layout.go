package cgroups

// Layout is the way a host mounts its cgroup hierarchies.
type Layout int

const (
	// V1 is the legacy layout: one cgroup v1 hierarchy per controller (or
	// group of co-mounted controllers), usually at /sys/fs/cgroup/<name> on
	// a tmpfs, and no cgroup2 hierarchy.
	V1 Layout = iota + 1
	// V2 is the unified layout: a single cgroup2 hierarchy, normally
	// mounted at /sys/fs/cgroup, that holds every controller.
	V2
	// Hybrid is systemd's transitional layout: the controllers are on v1
	// hierarchies as in V1, and a cgroup2 hierarchy, usually without
	// controllers, is mounted at /sys/fs/cgroup/unified for process
	// tracking.
	Hybrid
)

// String returns "v1", "v2" or "hybrid".
func (l Layout) String() string {
	switch l {
	case V1:
		return "v1"
	case V2:
		return "v2"
	case Hybrid:
		return "hybrid"
	}
	return "unknown"
}
