package cgroups

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(n int64) *int64   { return &n }
func u64(n uint64) *uint64 { return &n }
func boolp(b bool) *bool   { return &b }
func mem(limit int64) *specs.LinuxResources {
	return &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(limit)}}
}

func TestWrites(t *testing.T) {
	type w = write
	const mib32, mib64 = "33554432", "67108864"
	for _, tc := range []struct {
		name   string
		res    *specs.LinuxResources
		v1, v2 []write
		err    string
	}{
		{name: "nil"},
		{name: "empty", res: &specs.LinuxResources{}},
		{name: "devices only", res: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}},
		{
			name: "memory: no swap",
			res:  mem(32 << 20),
			v1:   []write{{ctrlMemory, "memory.limit_in_bytes", mib32, false}, {ctrlMemory, "memory.memsw.limit_in_bytes", mib32, true}},
			v2:   []write{{ctrlMemory, "memory.max", mib32, false}, {ctrlMemory, "memory.swap.max", "0", true}},
		},
		{
			name: "memory with swap",
			res:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(32 << 20), Swap: i64(64 << 20)}},
			v1:   []write{{ctrlMemory, "memory.limit_in_bytes", mib32, false}, {ctrlMemory, "memory.memsw.limit_in_bytes", mib64, true}},
			v2:   []write{{ctrlMemory, "memory.max", mib32, false}, {ctrlMemory, "memory.swap.max", mib32, true}},
		},
		{
			name: "memory with unlimited swap",
			res:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(32 << 20), Swap: i64(-1)}},
			v1:   []write{{ctrlMemory, "memory.limit_in_bytes", mib32, false}, {ctrlMemory, "memory.memsw.limit_in_bytes", "-1", true}},
			v2:   []write{{ctrlMemory, "memory.max", mib32, false}, {ctrlMemory, "memory.swap.max", "max", true}},
		},
		{
			name: "memory unlimited",
			res:  mem(-1),
			v1:   []write{{ctrlMemory, "memory.limit_in_bytes", "-1", false}, {ctrlMemory, "memory.memsw.limit_in_bytes", "-1", true}},
			v2:   []write{{ctrlMemory, "memory.max", "max", false}, {ctrlMemory, "memory.swap.max", "max", true}},
		},
		{name: "memory zero is unset", res: mem(0)},
		{
			name: "swap without limit",
			res:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64(64 << 20)}},
			err:  "needs a memory limit too",
		},
		{
			name: "swap below limit",
			res:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(32 << 20)}},
			err:  "is below the memory limit",
		},
		{name: "negative limit", res: mem(-5), err: "invalid memory limit"},
		{
			name: "docker --cpus=1.5",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}},
			v1:   []write{{ctrlCPU, "cpu.cfs_period_us", "100000", false}, {ctrlCPU, "cpu.cfs_quota_us", "150000", false}},
			v2:   []write{{ctrlCPU, "cpu.max", "150000 100000", false}},
		},
		{
			name: "quota without period",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000)}},
			v1:   []write{{ctrlCPU, "cpu.cfs_period_us", "100000", false}, {ctrlCPU, "cpu.cfs_quota_us", "50000", false}},
			v2:   []write{{ctrlCPU, "cpu.max", "50000 100000", false}},
		},
		{
			name: "period without quota",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64(50000)}},
			v1:   []write{{ctrlCPU, "cpu.cfs_period_us", "50000", false}, {ctrlCPU, "cpu.cfs_quota_us", "-1", false}},
			v2:   []write{{ctrlCPU, "cpu.max", "max 50000", false}},
		},
		{
			name: "shares",
			res:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(1024)}},
			v1:   []write{{ctrlCPU, "cpu.shares", "1024", false}},
			v2:   []write{{ctrlCPU, "cpu.weight", "39", false}},
		},
		{
			name: "pids",
			res:  &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}},
			v1:   []write{{ctrlPids, "pids.max", "10", false}},
			v2:   []write{{ctrlPids, "pids.max", "10", false}},
		},
		{
			name: "pids unlimited",
			res:  &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}},
			v1:   []write{{ctrlPids, "pids.max", "max", false}},
			v2:   []write{{ctrlPids, "pids.max", "max", false}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v1, err1 := v1Writes(tc.res)
			v2, err2 := v2Writes(tc.res)
			if tc.err != "" {
				for _, err := range []error{err1, err2} {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Errorf("error %v; want one containing %q", err, tc.err)
					}
				}
				return
			}
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if !reflect.DeepEqual(v1, tc.v1) {
				t.Errorf("v1Writes = %v\nwant %v", v1, tc.v1)
			}
			if !reflect.DeepEqual(v2, tc.v2) {
				t.Errorf("v2Writes = %v\nwant %v", v2, tc.v2)
			}
		})
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]int64{0: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := sharesToWeight(shares); got != want {
			t.Errorf("sharesToWeight(%d) = %d; want %d", shares, got, want)
		}
	}
}

func TestCheckResources(t *testing.T) {
	ok := []*specs.LinuxResources{
		nil,
		{},
		{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		{Memory: &specs.LinuxMemory{Limit: i64(1 << 30), Swap: i64(2 << 30), UseHierarchy: boolp(true)}},
		{CPU: &specs.LinuxCPU{Quota: i64(1), Period: u64(1), Shares: u64(1), Idle: i64(0)}},
		{Memory: &specs.LinuxMemory{DisableOOMKiller: boolp(false)}},
		{Pids: &specs.LinuxPids{Limit: i64(5)}},
	}
	for _, res := range ok {
		if err := checkResources(res); err != nil {
			t.Errorf("checkResources(%+v): %v", res, err)
		}
	}
	bad := map[string]*specs.LinuxResources{
		"cpuset":           {CPU: &specs.LinuxCPU{Cpus: "0-1"}},
		"realtime":         {CPU: &specs.LinuxCPU{RealtimeRuntime: i64(1)}},
		"reservation":      {Memory: &specs.LinuxMemory{Reservation: i64(1)}},
		"kernel memory":    {Memory: &specs.LinuxMemory{Kernel: i64(1)}},
		"swappiness":       {Memory: &specs.LinuxMemory{Swappiness: u64(0)}},
		"blockIO":          {BlockIO: &specs.LinuxBlockIO{}},
		"hugepage":         {HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}},
		"unified":          {Unified: map[string]string{"memory.high": "1"}},
		"disableOOMKiller": {Memory: &specs.LinuxMemory{DisableOOMKiller: boolp(true)}},
	}
	for name, res := range bad {
		err := checkResources(res)
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("%s: checkResources = %v; want an ErrUnsupported", name, err)
		}
	}
}
