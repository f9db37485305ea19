package cgroups

import (
	"strings"
	"testing"
)

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // substring of the error; "" for none
	}{
		{"512m", 512 << 20, ""},
		{"512M", 512 << 20, ""},
		{"2g", 2 << 30, ""},
		{"2G", 2 << 30, ""},
		{"1.5g", 3 << 29, ""},
		{"6m", 6 << 20, ""},
		{"6291456", 6 << 20, ""},
		{"6291456b", 6 << 20, ""},
		{"8192k", 8 << 20, ""},
		{"8192K", 8 << 20, ""},
		{"512mb", 512 << 20, ""},
		{"512MiB", 512 << 20, ""},
		{"1t", 1 << 40, ""},
		{" 64m ", 64 << 20, ""},
		{"0", 0, ""},
		{"0m", 0, ""},
		{"4m", 0, `memory limit "4m" (4194304 bytes) is below the minimum of 6 MiB: give at least 6m`},
		{"100", 0, "below the minimum of 6 MiB"},
		{"1k", 0, "below the minimum"},
		{"", 0, `invalid memory size ""`},
		{"m", 0, `invalid memory size "m"`},
		{"12x", 0, `invalid memory size "12x": want a number with an optional b, k, m or g suffix`},
		{"-1", 0, "invalid memory size"},
		{"1.2.3g", 0, "invalid memory size"},
		{"12ib", 0, "invalid memory size"},
		{"99999999999999999999", 0, "too large"},
		{"9999999999t", 0, "too large"},
		{"9999999999.5t", 0, "too large"},
	} {
		got, err := ParseMemory(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseMemory(%q): %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseMemory(%q) = %d, %v; want error containing %q", tc.in, got, err, tc.err)
		case tc.err == "" && got != tc.want:
			t.Errorf("ParseMemory(%q) = %d; want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	for _, tc := range []struct {
		in            string
		quota, period int64
		err           string
	}{
		{"1.5", 150000, 100000, ""},
		{"1", 100000, 100000, ""},
		{"0.5", 50000, 100000, ""},
		{"0.01", 1000, 100000, ""},
		{"0.1", 10000, 100000, ""},
		{"2.33", 233000, 100000, ""},
		{"16", 1600000, 100000, ""},
		{"0", 0, 0, ""},
		{"0.001", 0, 0, `--cpus value "0.001" is below the minimum of 0.01 CPUs`},
		{"-1", 0, 0, `invalid --cpus value "-1"`},
		{"abc", 0, 0, `invalid --cpus value "abc"`},
		{"NaN", 0, 0, "invalid --cpus value"},
		{"Inf", 0, 0, "invalid --cpus value"},
		{"1e9", 0, 0, "too large"},
	} {
		q, p, err := ParseCPUs(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseCPUs(%q): %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseCPUs(%q) = %d, %d, %v; want error containing %q", tc.in, q, p, err, tc.err)
		case tc.err == "" && (q != tc.quota || p != tc.period):
			t.Errorf("ParseCPUs(%q) = %d, %d; want %d, %d", tc.in, q, p, tc.quota, tc.period)
		}
	}
}

func TestLayoutString(t *testing.T) {
	for l, want := range map[Layout]string{V1: "v1", V2: "v2", Hybrid: "hybrid", 0: "unknown"} {
		if got := l.String(); got != want {
			t.Errorf("Layout(%d).String() = %q; want %q", int(l), got, want)
		}
	}
}
