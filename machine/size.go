package machine

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads a size with a unit, as users write them: 512MiB, 2G,
// 64GB, 1.5GiB. Units are powers of 1024 with or without the i and the B;
// a bare number is refused, since MiB and GiB are both plausible.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("size %q: give a number and a unit, e.g. 2GiB or 512MiB", s)
	}
	n, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: give a number and a unit, e.g. 2GiB or 512MiB", s)
	}
	var mult float64
	switch strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(t[i:]), "B"), "b")) {
	case "k", "ki":
		mult = 1 << 10
	case "m", "mi":
		mult = 1 << 20
	case "g", "gi":
		mult = 1 << 30
	case "t", "ti":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit (use KiB, MiB, GiB or TiB)", s)
	}
	return int64(n * mult), nil
}

// MinDiskBytes is the smallest data disk `devbox up --disk` makes: the
// ext4 file system's own metadata and a few images must fit.
const MinDiskBytes = 1 << 30

// FormatSize writes a size the way ParseSize reads it, in the largest
// unit that keeps it short: 3GiB, 1.5GiB, 512MiB.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size {
			s := strconv.FormatFloat(float64(n)/float64(u.size), 'f', 2, 64)
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
			return s + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
