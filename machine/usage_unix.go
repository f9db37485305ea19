//go:build unix

package machine

import "golang.org/x/sys/unix"

// diskUsage is the host space a sparse disk image takes.
func diskUsage(path string) int64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}
