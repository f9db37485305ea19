package cgroups

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MinMemory is the smallest memory limit [ParseMemory] accepts: 6 MiB, the
// same floor docker applies to --memory. Below it a container cannot
// even start its first process reliably.
const MinMemory = 6 << 20

// DefaultCPUPeriod is the CFS period, in microseconds, that [ParseCPUs]
// pairs with the quota: 100ms, as docker uses for --cpus.
const DefaultCPUPeriod = 100000

// ParseMemory parses a memory size written the way docker's --memory flag
// takes it: a number (a decimal fraction is allowed) with an optional unit
// suffix b, k, m, g or t, case-insensitive, in powers of 1024; "kb"/"kib"
// style spellings of the units are accepted too. "512m" is 512 MiB and a
// bare number is bytes. "0" returns 0, which means no limit. Any other
// value below [MinMemory] is an error.
func ParseMemory(s string) (int64, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.') {
		i++
	}
	num, unit := v[:i], strings.TrimSpace(v[i:])
	var mult int64
	switch strings.TrimSuffix(strings.TrimSuffix(unit, "b"), "i") {
	case "":
		mult = 1
		if unit == "i" || unit == "ib" {
			mult = 0
		}
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	case "t":
		mult = 1 << 40
	}
	if num == "" || mult == 0 {
		return 0, fmt.Errorf("invalid memory size %q: want a number with an optional b, k, m or g suffix, such as 512m or 2g", s)
	}
	var n int64
	if !strings.Contains(num, ".") {
		u, err := strconv.ParseUint(num, 10, 63)
		if err != nil || u > math.MaxInt64/uint64(mult) {
			return 0, fmt.Errorf("invalid memory size %q: too large", s)
		}
		n = int64(u) * mult
	} else {
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid memory size %q: want a number with an optional b, k, m or g suffix, such as 512m or 2g", s)
		}
		f *= float64(mult)
		if f >= math.MaxInt64 {
			return 0, fmt.Errorf("invalid memory size %q: too large", s)
		}
		n = int64(f)
	}
	if n != 0 && n < MinMemory {
		return 0, fmt.Errorf("memory limit %q (%d bytes) is below the minimum of 6 MiB: give at least 6m, or 0 for no limit", s, n)
	}
	return n, nil
}

// ParseCPUs parses docker's --cpus value, a decimal number of CPUs, into a
// CFS quota and period in microseconds: "1.5" is quota 150000 for period
// 100000 ([DefaultCPUPeriod]). "0" returns 0, 0, which means no limit. The
// smallest limit is 0.01 CPUs (a 1ms quota, the kernel's minimum). It does
// not compare the value with the number of CPUs, since the CLI may run on a
// different machine than the container.
func ParseCPUs(s string) (quota, period int64, err error) {
	f, perr := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if perr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, 0, fmt.Errorf("invalid --cpus value %q: want a number of CPUs such as 1.5 or 0.5", s)
	}
	if f == 0 {
		return 0, 0, nil
	}
	if f > 1<<20 {
		return 0, 0, fmt.Errorf("invalid --cpus value %q: too large", s)
	}
	quota = int64(math.Round(f * DefaultCPUPeriod))
	if quota < 1000 {
		return 0, 0, fmt.Errorf("--cpus value %q is below the minimum of 0.01 CPUs: give 0.01 or more, or 0 for no limit", s)
	}
	return quota, DefaultCPUPeriod, nil
}
