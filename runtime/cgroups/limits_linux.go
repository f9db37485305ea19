package cgroups

import (
	"errors"
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// write is one control file to set in a new cgroup.
type write struct {
	ctrl  ctrl
	file  string
	value string
	// optional writes are skipped when the file does not exist: the
	// host lacks the feature (swap accounting) and the limit still holds
	// without it.
	optional bool
}

// checkResources rejects resource settings this package does not apply,
// so that a limit the user asked for is never silently dropped.
func checkResources(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	var what string
	switch {
	case res.CPU != nil && (res.CPU.Cpus != "" || res.CPU.Mems != ""):
		what = "cpuset (cpu.cpus, cpu.mems)"
	case res.CPU != nil && (res.CPU.RealtimeRuntime != nil || res.CPU.RealtimePeriod != nil):
		what = "realtime CPU scheduling"
	case res.CPU != nil && res.CPU.Burst != nil && *res.CPU.Burst != 0:
		what = "cpu.burst"
	case res.CPU != nil && res.CPU.Idle != nil && *res.CPU.Idle != 0:
		what = "cpu.idle"
	case res.Memory != nil && res.Memory.Reservation != nil:
		what = "memory.reservation"
	case res.Memory != nil && (res.Memory.Kernel != nil || res.Memory.KernelTCP != nil):
		what = "kernel memory limits"
	case res.Memory != nil && res.Memory.Swappiness != nil:
		what = "memory.swappiness"
	case res.Memory != nil && res.Memory.DisableOOMKiller != nil && *res.Memory.DisableOOMKiller:
		what = "memory.disableOOMKiller"
	case res.BlockIO != nil:
		what = "blockIO"
	case len(res.HugepageLimits) > 0:
		what = "hugepageLimits"
	case res.Network != nil:
		what = "network (net_cls, net_prio)"
	case len(res.Rdma) > 0:
		what = "rdma"
	case len(res.Unified) > 0:
		what = "unified"
	default:
		return nil
	}
	return fmt.Errorf("cgroups: resource %s is not supported: %w", what, errors.ErrUnsupported)
}

// memoryLimits resolves the memory settings: limit is the memory limit
// (0 unset, -1 unlimited); swap is memory+swap as OCI spells it, which
// defaults to the memory limit (no swap at all) when a limit is set.
func memoryLimits(res *specs.LinuxResources) (limit, swap int64, err error) {
	if res == nil || res.Memory == nil {
		return 0, 0, nil
	}
	if res.Memory.Limit != nil {
		limit = *res.Memory.Limit
		if limit < -1 {
			return 0, 0, fmt.Errorf("cgroups: invalid memory limit %d", limit)
		}
	}
	if limit != 0 {
		swap = limit
	}
	if s := res.Memory.Swap; s != nil && *s != 0 {
		switch {
		case *s == -1:
			swap = -1
		case *s < -1:
			return 0, 0, fmt.Errorf("cgroups: invalid memory+swap limit %d", *s)
		case limit <= 0:
			return 0, 0, fmt.Errorf("cgroups: a memory+swap limit (%d) needs a memory limit too", *s)
		case *s < limit:
			return 0, 0, fmt.Errorf("cgroups: memory+swap limit %d is below the memory limit %d", *s, limit)
		default:
			swap = *s
		}
	}
	return limit, swap, nil
}

// cpuMax resolves the CFS settings. ok is false when neither quota nor
// period is set; quota -1 means no quota.
func cpuMax(res *specs.LinuxResources) (quota, period int64, ok bool) {
	if res == nil || res.CPU == nil || res.CPU.Quota == nil && res.CPU.Period == nil {
		return 0, 0, false
	}
	quota, period = -1, DefaultCPUPeriod
	if q := res.CPU.Quota; q != nil && *q > 0 {
		quota = *q
	}
	if p := res.CPU.Period; p != nil && *p != 0 {
		period = int64(*p)
	}
	return quota, period, true
}

// wantsCPU reports whether res sets anything in the cpu controller.
func wantsCPU(res *specs.LinuxResources) bool {
	_, _, ok := cpuMax(res)
	return ok || res != nil && res.CPU != nil && res.CPU.Shares != nil && *res.CPU.Shares != 0
}

func pidsLimit(res *specs.LinuxResources) int64 {
	if res == nil || res.Pids == nil || res.Pids.Limit == nil {
		return 0
	}
	return *res.Pids.Limit
}

// v1Writes lists the cgroup v1 control files to write for res, in order.
func v1Writes(res *specs.LinuxResources) ([]write, error) {
	var ws []write
	limit, swap, err := memoryLimits(res)
	if err != nil {
		return nil, err
	}
	if limit != 0 {
		// The memory limit goes first: memsw may not be below it.
		ws = append(ws, write{ctrlMemory, "memory.limit_in_bytes", itoa(limit), false})
		ws = append(ws, write{ctrlMemory, "memory.memsw.limit_in_bytes", itoa(swap), true})
	}
	if quota, period, ok := cpuMax(res); ok {
		ws = append(ws, write{ctrlCPU, "cpu.cfs_period_us", itoa(period), false})
		ws = append(ws, write{ctrlCPU, "cpu.cfs_quota_us", itoa(quota), false})
	}
	if res != nil && res.CPU != nil && res.CPU.Shares != nil && *res.CPU.Shares != 0 {
		ws = append(ws, write{ctrlCPU, "cpu.shares", strconv.FormatUint(*res.CPU.Shares, 10), false})
	}
	if n := pidsLimit(res); n != 0 {
		ws = append(ws, write{ctrlPids, "pids.max", maxOr(n), false})
	}
	return ws, nil
}

// v2Writes lists the cgroup2 control files to write for res, in order.
func v2Writes(res *specs.LinuxResources) ([]write, error) {
	var ws []write
	limit, swap, err := memoryLimits(res)
	if err != nil {
		return nil, err
	}
	if limit != 0 {
		ws = append(ws, write{ctrlMemory, "memory.max", maxOr(limit), false})
		// cgroup2 limits swap alone, not memory+swap.
		s := int64(-1)
		if swap != -1 && limit > 0 {
			s = swap - limit
		}
		ws = append(ws, write{ctrlMemory, "memory.swap.max", maxOr(s), true})
	}
	if quota, period, ok := cpuMax(res); ok {
		ws = append(ws, write{ctrlCPU, "cpu.max", maxOr(quota) + " " + itoa(period), false})
	}
	if res != nil && res.CPU != nil && res.CPU.Shares != nil && *res.CPU.Shares != 0 {
		ws = append(ws, write{ctrlCPU, "cpu.weight", itoa(sharesToWeight(*res.CPU.Shares)), false})
	}
	if n := pidsLimit(res); n != 0 {
		ws = append(ws, write{ctrlPids, "pids.max", maxOr(n), false})
	}
	return ws, nil
}

// sharesToWeight maps cgroup v1 cpu.shares [2, 262144] onto cgroup2
// cpu.weight [1, 10000] linearly, the conversion the OCI runtimes share
// (so docker's default 1024 becomes 39).
func sharesToWeight(shares uint64) int64 {
	shares = min(max(shares, 2), 262144)
	return int64(1 + (shares-2)*9999/262142)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// maxOr formats a limit with "max" for unlimited (negative).
func maxOr(n int64) string {
	if n < 0 {
		return "max"
	}
	return itoa(n)
}
