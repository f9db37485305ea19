package machine

import "os"

// diskUsage is the disk image's size; Windows reports no allocated size
// through Stat.
func diskUsage(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
