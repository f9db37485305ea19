package agent

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// seedRNG mixes the host's fresh random bytes at path into the kernel's
// pool and credits them as entropy, so nothing in the guest waits for it.
func seedRNG(path string) error {
	seed, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("random seed: %w", err)
	}
	if len(seed) == 0 {
		return fmt.Errorf("random seed %s is empty", path)
	}
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+len(seed)+3)
	binary.NativeEndian.PutUint32(buf[0:], uint32(8*len(seed)))
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(seed)))
	copy(buf[8:], seed)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	return nil
}

// setClock sets the clock to floor when it is behind it; with always,
// it sets it to floor whatever it says (the host's word).
func setClock(t time.Time, always bool) (bool, error) {
	if !always && !time.Now().Before(t) {
		return false, nil
	}
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return false, fmt.Errorf("set clock: %w", err)
	}
	return true, nil
}

// setHostname names the guest and writes the /etc files that go with it
// and with the DNS servers.
func setHostname(name string, dns []string) error {
	if name != "" {
		if err := unix.Sethostname([]byte(name)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return err
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if name != "" {
		hosts += "127.0.1.1\t" + name + "\n"
		if err := os.WriteFile("/etc/hostname", []byte(name+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile("/etc/hosts", []byte(hosts), 0o644); err != nil {
		return err
	}
	var rc strings.Builder
	for _, d := range dns {
		rc.WriteString("nameserver " + d + "\n")
	}
	return os.WriteFile("/etc/resolv.conf", []byte(rc.String()), 0o644)
}
