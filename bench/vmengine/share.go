//go:build linux

package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/devbox-dev/devbox/bench/internal/stats"
)

// shareReads reads a 100 MB file and 1000 small files through a bind
// mount of a shared host directory in a container, against the same
// files on the guest's own disk (ext4 on the data disk), read in the
// guest. The guest's page cache is dropped before each read, so both
// come from their backing store (the host's page cache, for the share).
func shareReads(dbx func(...string) (string, error), work, ref string, rounds int) error {
	dir := filepath.Join(work, "share-bench")
	small := filepath.Join(dir, "small")
	if err := os.MkdirAll(small, 0o755); err != nil {
		return err
	}
	big := make([]byte, 100<<20)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		return err
	}
	for i := 0; i < 1000; i++ {
		if err := os.WriteFile(filepath.Join(small, fmt.Sprintf("f%04d", i)), big[i*4096:(i+1)*4096], 0o644); err != nil {
			return err
		}
	}
	// Centiseconds from /proc/uptime: the guest's busybox date has no
	// nanoseconds.
	const timing = `cs() { read u _ < /proc/uptime; echo "${u%%.*}${u#*.}"; }
t() { sync; { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; s=$(cs); "$@" > /dev/null; e=$(cs); echo $(( (e-s)*10 )); }
`
	script := func(root string) string {
		return timing + fmt.Sprintf("t cat %[1]s/big; t cat %[1]s/small/*\n", root)
	}
	const guestCopy = "/var/lib/devbox/share-bench"
	if _, err := dbx("ssh", "--", fmt.Sprintf("rm -rf %[2]s && cp -r %[1]s %[2]s", dir, guestCopy)); err != nil {
		return err
	}
	var shareBig, shareSmall, diskBig, diskSmall []float64
	parse := func(out string, a, b *[]float64) error {
		f := strings.Fields(out)
		if len(f) < 2 {
			return fmt.Errorf("timing: %q", out)
		}
		x, err1 := strconv.ParseFloat(f[len(f)-2], 64)
		y, err2 := strconv.ParseFloat(f[len(f)-1], 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("timing: %q", out)
		}
		*a, *b = append(*a, x), append(*b, y)
		return nil
	}
	for i := 0; i < rounds; i++ {
		// The container runs as root, so it may drop the guest's caches
		// only with /proc/sys writable: it is not, so the share read goes
		// to the host anyway (9p with cache=mmap caches no reads).
		out, err := dbx("run", "--rm", "-v", dir+":/src:ro", ref, "sh", "-c", script("/src"))
		if err != nil {
			return err
		}
		if err := parse(out, &shareBig, &shareSmall); err != nil {
			return err
		}
		if out, err = dbx("ssh", "--", script(guestCopy)); err != nil {
			return err
		}
		if err := parse(out, &diskBig, &diskSmall); err != nil {
			return err
		}
	}
	ms := func(xs []float64) string { return stats.Millis(time.Duration(stats.Median(xs) * 1e6)) }
	fmt.Printf("reads from a bind mount of a shared host directory (9p) vs the guest's own disk, %d rounds, cold guest cache:\n", rounds)
	fmt.Printf("  100 MB file:       share %s, guest disk %s\n", ms(shareBig), ms(diskBig))
	fmt.Printf("  1000 files of 4 KiB: share %s, guest disk %s\n", ms(shareSmall), ms(diskSmall))
	return nil
}
