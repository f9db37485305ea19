package spec

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/devbox-dev/devbox/runtime"
)

// nofile is the open-files limit Docker's containers get by default.
const nofile = 1 << 20

// hostNofileMax returns this process's hard RLIMIT_NOFILE. A variable for
// tests.
var hostNofileMax = func() uint64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return nofile
	}
	return r.Max
}

// defaultRlimits is RLIMIT_NOFILE at 1048576, soft and hard, or at the
// host's hard limit if that is lower (the container cannot be given more).
func defaultRlimits() []specs.POSIXRlimit {
	n := min(uint64(nofile), hostNofileMax())
	return []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: n, Soft: n}}
}

// maskedPaths are Docker's (the runtime's defaults), plus each present
// CPU's thermal_throttle directory, as moby adds.
func maskedPaths() []string {
	return append(runtime.DefaultSpec().Linux.MaskedPaths, thermalThrottle()...)
}

// thermalThrottle lists /sys/devices/system/cpu/cpuN/thermal_throttle for
// the possible CPUs that have one; the host does not change while devbox
// runs, so it is read once. A variable for tests.
var thermalThrottle = sync.OnceValue(func() []string {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		first, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for cpu := first; cpu <= last; cpu++ {
			p := "/sys/devices/system/cpu/cpu" + strconv.Itoa(cpu) + "/thermal_throttle"
			if _, err := os.Stat(p); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
})

// networkSysctls are what Docker sets in a container with a network
// namespace of its own, where the kernel has them: ping without
// CAP_NET_RAW, and every port bindable without CAP_NET_BIND_SERVICE.
// A variable for tests.
var networkSysctls = func() map[string]string {
	have := networkSysctlsOnce()
	if len(have) == 0 {
		return nil
	}
	m := make(map[string]string, len(have))
	for _, kv := range have {
		m[kv[0]] = kv[1]
	}
	return m
}

var networkSysctlsOnce = sync.OnceValue(func() [][2]string {
	var out [][2]string
	for _, kv := range [][2]string{
		{"net.ipv4.ping_group_range", "0 2147483647"},
		{"net.ipv4.ip_unprivileged_port_start", "0"},
	} {
		if _, err := os.Stat("/proc/sys/" + strings.ReplaceAll(kv[0], ".", "/")); err == nil {
			out = append(out, kv)
		}
	}
	return out
})

// Network modes.
const (
	NetworkHost = "host"
	NetworkNone = "none"
)

// checkNetwork returns the network mode of --network; empty means host.
func checkNetwork(n string) (string, error) {
	switch n {
	case "", NetworkHost:
		return NetworkHost, nil
	case NetworkNone:
		return NetworkNone, nil
	}
	return "", fmt.Errorf("--network %q: not supported; use --network host (the default) or --network none", n)
}

// Namespaces returns the namespaces Generate gives a container run with
// o, for a caller that creates the container's process before the rest of
// its spec (runtime.Container.Prestart).
func Namespaces(o Options) ([]specs.LinuxNamespace, error) {
	network, err := checkNetwork(o.Network)
	if err != nil {
		return nil, err
	}
	return namespaces(network), nil
}

// namespaces are new ones of every kind but the network with host
// networking; --network none gets a network namespace with only lo.
func namespaces(network string) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{
		{Type: specs.MountNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.CgroupNamespace},
	}
	if network == NetworkNone {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	return ns
}

func i64(v int64) *int64 { return &v }

// deviceRules is the device cgroup a Docker container gets: Docker's rules
// (moby daemon/pkg/oci/defaults.go) followed by those runc adds to every
// container (libcontainer/specconv AllowedDevices: mknod of any device, the
// standard character devices, ptys and /dev/net/tun). Rules apply in
// order, a later one overriding an earlier one. Fresh every call.
//
// runtime/cgroups enforces them (the v1 devices controller, or a BPF
// device program on cgroup2): CAP_MKNOD is in the default set, and the
// rootfs, /dev and binds are not nodev (as in Docker), so without the
// device cgroup a container's root could create and open the host's
// disks.
func deviceRules() []specs.LinuxDeviceCgroup {
	nums := make([]int64, 0, 32) // one allocation for every major and minor
	num := func(v int64) *int64 {
		nums = append(nums, v)
		return &nums[len(nums)-1]
	}
	rule := func(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Access: access}
		if major >= 0 {
			r.Major = num(major)
		}
		if minor >= 0 {
			r.Minor = num(minor)
		}
		return r
	}
	const all = -1
	return []specs.LinuxDeviceCgroup{
		// Docker
		{Allow: false, Type: "a", Access: "rwm"},
		rule(true, "c", 1, 5, "rwm"),     // /dev/zero
		rule(true, "c", 1, 3, "rwm"),     // /dev/null
		rule(true, "c", 1, 9, "rwm"),     // /dev/urandom
		rule(true, "c", 1, 8, "rwm"),     // /dev/random
		rule(true, "c", 5, 0, "rwm"),     // /dev/tty
		rule(true, "c", 5, 1, "rwm"),     // /dev/console
		rule(false, "c", 10, 229, "rwm"), // /dev/fuse
		// runc
		rule(true, "c", all, all, "m"),
		rule(true, "b", all, all, "m"),
		rule(true, "c", 1, 3, "rwm"),     // /dev/null
		rule(true, "c", 1, 8, "rwm"),     // /dev/random
		rule(true, "c", 1, 7, "rwm"),     // /dev/full
		rule(true, "c", 5, 0, "rwm"),     // /dev/tty
		rule(true, "c", 1, 5, "rwm"),     // /dev/zero
		rule(true, "c", 1, 9, "rwm"),     // /dev/urandom
		rule(true, "c", 136, all, "rwm"), // /dev/pts/*
		rule(true, "c", 5, 2, "rwm"),     // /dev/ptmx
		rule(true, "c", 10, 200, "rwm"),  // /dev/net/tun
	}
}

// Docker's limits on the resource flags.
const (
	minMemory    = 6 << 20 // bytes
	minCPUPeriod = 1000    // µs
	maxCPUPeriod = 1000000 // µs
	minCPUQuota  = 1000    // µs
)

// CgroupsPath is the cgroup path (Linux.CgroupsPath) of container id.
func CgroupsPath(id string) string { return "devbox/" + id }

// Resources returns the cgroup settings Generate gives a container run with
// o (Linux.Resources), for a caller that creates the container's cgroup
// before the rest of its spec.
func Resources(o Options) (*specs.LinuxResources, error) { return buildResources(o) }

// buildResources is the cgroup settings of the flags, and the device rules.
func buildResources(o Options) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{Devices: deviceRules()}
	switch {
	case o.Memory < 0:
		return nil, fmt.Errorf("--memory %d: must not be negative; use 0 for no limit", o.Memory)
	case o.Memory > 0 && o.Memory < minMemory:
		return nil, fmt.Errorf("--memory %d: the minimum memory limit is 6MiB (%d bytes); raise it or use 0 for no limit", o.Memory, minMemory)
	case o.Memory > 0:
		// Swap is the memory+swap limit: equal to the memory limit, the
		// container gets no swap. (Docker's default is twice the memory.)
		r.Memory = &specs.LinuxMemory{Limit: i64(o.Memory), Swap: i64(o.Memory)}
	}
	if o.CPUPeriod != 0 && (o.CPUPeriod < minCPUPeriod || o.CPUPeriod > maxCPUPeriod) {
		return nil, fmt.Errorf("--cpu-period %d: must be between %d and %d microseconds, or 0 for the default", o.CPUPeriod, minCPUPeriod, maxCPUPeriod)
	}
	if o.CPUQuota > 0 && o.CPUQuota < minCPUQuota {
		return nil, fmt.Errorf("--cpu-quota %d: must be at least %d microseconds, or 0 for no limit", o.CPUQuota, minCPUQuota)
	}
	if o.CPUQuota > 0 || o.CPUPeriod > 0 {
		r.CPU = &specs.LinuxCPU{}
		if o.CPUQuota > 0 {
			r.CPU.Quota = i64(o.CPUQuota)
		}
		if o.CPUPeriod > 0 {
			p := uint64(o.CPUPeriod)
			r.CPU.Period = &p
		}
	}
	if o.PidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: i64(o.PidsLimit)}
	}
	return r, nil
}
