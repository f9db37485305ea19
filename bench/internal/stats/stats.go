// Package stats summarises a benchmark's samples and formats the numbers
// the benchmarks under bench/ print, so that they all read alike.
package stats

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Median returns the middle value of xs, or the mean of the two middle
// values; 0 when xs is empty. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method: the smallest value that at least p percent of xs
// are at or below. It returns 0 when xs is empty. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Durations converts ds to float64 nanoseconds, for Median and Percentile.
func Durations(ds []time.Duration) []float64 {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return xs
}

// Verdict says whether a target was met.
func Verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

// Secs formats d as seconds with millisecond precision.
func Secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// Millis formats d as milliseconds with one decimal.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// KiB formats k kibibytes (the unit of getrusage's ru_maxrss on Linux) as
// MiB.
func KiB(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }

// MiB formats b bytes as MiB.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
