package stats

import (
	"slices"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := slices.Clone(c.in)
		if got := Median(in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("Median reordered its input: %v", in)
		}
	}
}

func TestPercentile(t *testing.T) {
	ten := []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	for _, c := range []struct {
		in   []float64
		p    float64
		want float64
	}{
		{nil, 90, 0},
		{[]float64{7}, 90, 7},
		{ten, 90, 9},
		{ten, 50, 5},
		{ten, 100, 10},
		{ten, 1, 1},
		{ten, 0, 1},
		{[]float64{1, 2, 3}, 90, 3},
	} {
		if got := Percentile(c.in, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", c.in, c.p, got, c.want)
		}
	}
}

func TestFormat(t *testing.T) {
	if got := Millis(31250 * time.Microsecond); got != "31.2 ms" && got != "31.3 ms" {
		t.Errorf("Millis = %q", got)
	}
	if got := Secs(1500 * time.Millisecond); got != "1.500s" {
		t.Errorf("Secs = %q", got)
	}
	if got := KiB(10240); got != "10.0 MiB" {
		t.Errorf("KiB = %q", got)
	}
	if got := MiB(3 << 19); got != "1.5 MiB" {
		t.Errorf("MiB = %q", got)
	}
	if Verdict(true) != "MET" || Verdict(false) != "NOT MET" {
		t.Error("Verdict")
	}
}
