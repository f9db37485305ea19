package machine

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "2G": 2 << 30, "64GB": 64 << 30, "1.5GiB": 3 << 29, "1t": 1 << 40} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"2048", "", "GiB", "2 parsecs", "-1G", "0G"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[int64]string{3 << 30: "3GiB", 3 << 29: "1.5GiB", 512 << 20: "512MiB", 64 << 30: "64GiB", 1 << 40: "1TiB", 100: "100B", 3<<30 + 512: "3GiB"} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
		if in >= 1<<20 && in%(1<<20) == 0 {
			if back, err := ParseSize(want); err != nil || back != in {
				t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", in, back, err)
			}
		}
	}
}
