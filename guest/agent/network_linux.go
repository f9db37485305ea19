package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"golang.org/x/sys/unix"
)

// setUpNetwork brings lo up, and the first NIC with n's static address
// and default route (n nil: lo only).
//
// It uses the classic interface ioctls rather than rtnetlink: boot needs
// four small changes, and a netlink library costs PID 1 far more than
// that under emulation (package init, and ~100 ms of first-use code in
// the first call, measured under TCG).
func setUpNetwork(log *logger, n *bootconfig.Network) error {
	start := time.Now()
	lap := func(what string) {
		log.Debugf("network: %s after %v", what, time.Since(start).Round(10*time.Microsecond))
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network socket: %w", err)
	}
	defer unix.Close(fd)
	if err := linkUp(fd, "lo"); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	lap("lo up")
	if n == nil {
		return nil
	}
	prefix, err := netip.ParsePrefix(n.Address)
	if err != nil || !prefix.Addr().Is4() {
		return fmt.Errorf("address %q is not an IPv4 address in CIDR form", n.Address)
	}
	var gw netip.Addr
	if n.Gateway != "" {
		if gw, err = netip.ParseAddr(n.Gateway); err != nil || !gw.Is4() {
			return fmt.Errorf("gateway %q is not an IPv4 address", n.Gateway)
		}
	}
	name, err := firstNIC(5 * time.Second)
	if err != nil {
		return err
	}
	lap(name + " found")
	if err := setAddr4(fd, name, prefix); err != nil {
		return fmt.Errorf("%s address %s: %w", name, n.Address, err)
	}
	lap(name + " address")
	if err := linkUp(fd, name); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	lap(name + " up")
	if gw.IsValid() {
		if err := addDefaultRoute4(fd, name, gw); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// linkUp sets IFF_UP on the interface name.
func linkUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// setAddr4 makes p the interface's (primary) IPv4 address and netmask;
// setting it again replaces it, as a boot that runs twice needs.
func setAddr4(fd int, name string, p netip.Prefix) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	a := p.Addr().As4()
	if err := ifr.SetInet4Addr(a[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("SIOCSIFADDR: %w", err)
	}
	mask := netmask4(p.Bits())
	if err := ifr.SetInet4Addr(mask[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("SIOCSIFNETMASK: %w", err)
	}
	return nil
}

// netmask4 is the IPv4 netmask of a prefix length.
func netmask4(bits int) [4]byte {
	var m [4]byte
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
		}
		bits -= 8
	}
	return m
}

// rtentry is the kernel's struct rtentry (<linux/route.h>), which
// golang.org/x/sys/unix does not define; Go lays it out as C does.
type rtentry struct {
	pad1    uintptr
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uintptr
	pad4    uintptr
	metric  int16
	dev     *byte
	mtu     uintptr
	window  uintptr
	irtt    uint16
}

// addDefaultRoute4 adds the IPv4 default route via gw on the interface
// name; one that is there already is as good.
func addDefaultRoute4(fd int, name string, gw netip.Addr) error {
	dev, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	rt := rtentry{
		flags: unix.RTF_UP | unix.RTF_GATEWAY,
		dev:   dev,
	}
	rt.dst.Family = unix.AF_INET
	rt.genmask.Family = unix.AF_INET
	rt.gateway.Family = unix.AF_INET
	rt.gateway.Addr = gw.As4()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt)))
	runtime.KeepAlive(dev)
	if errno != 0 && errno != unix.EEXIST {
		return fmt.Errorf("SIOCADDRT: %w", errno)
	}
	return nil
}

// firstNIC returns eth0, or else the first Ethernet device, waiting up to
// timeout for one to appear (a driver loaded as a module probes late).
func firstNIC(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if isEthernet("eth0") {
			return "eth0", nil
		}
		names, _ := filepath.Glob("/sys/class/net/*")
		for _, p := range names {
			if name := filepath.Base(p); isEthernet(name) {
				return name, nil
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("no network interface")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// isEthernet says whether the interface name exists and is an Ethernet
// device (ARPHRD_ETHER with a 6-byte address) rather than a bridge, tunnel
// or other virtual one (those have a type directory, "bridge", "tun"...,
// or no device behind them).
func isEthernet(name string) bool {
	dir := "/sys/class/net/" + name
	b, err := os.ReadFile(dir + "/type")
	if err != nil || strings.TrimSpace(string(b)) != "1" {
		return false
	}
	if b, err := os.ReadFile(dir + "/addr_len"); err != nil || strings.TrimSpace(string(b)) != "6" {
		return false
	}
	// Real NICs have a device behind them; veth, bridges, dummies don't.
	_, err = os.Stat(dir + "/device")
	return err == nil
}
