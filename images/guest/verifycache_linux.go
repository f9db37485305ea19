//go:build linux

package guest

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// statID is the file's device, inode and ctime, and the ctime.
func statID(fi os.FileInfo) (string, time.Time) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", time.Time{}
	}
	return fmt.Sprintf("%d|%d|%d.%09d", st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec), time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
}
