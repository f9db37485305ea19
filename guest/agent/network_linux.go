package agent

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/vishvananda/netlink"
)

// setUpNetwork brings lo up, and the first NIC with n's static address
// and default route (n nil: lo only).
func setUpNetwork(log *logger, n *bootconfig.Network) error {
	start := time.Now()
	lap := func(what string) {
		log.Debugf("network: %s after %v", what, time.Since(start).Round(10*time.Microsecond))
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	lap("lo up")
	if n == nil {
		return nil
	}
	addr, err := netlink.ParseAddr(n.Address)
	if err != nil {
		return fmt.Errorf("address %q: %w", n.Address, err)
	}
	gw := net.ParseIP(n.Gateway)
	if n.Gateway != "" && gw == nil {
		return fmt.Errorf("gateway %q is not an IP address", n.Gateway)
	}
	nic, err := firstNIC(5 * time.Second)
	if err != nil {
		return err
	}
	name := nic.Attrs().Name
	lap(name + " found")
	if err := netlink.AddrReplace(nic, addr); err != nil {
		return fmt.Errorf("%s address %s: %w", name, n.Address, err)
	}
	lap(name + " address")
	if err := netlink.LinkSetUp(nic); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	lap(name + " up")
	if gw != nil {
		r := &netlink.Route{LinkIndex: nic.Attrs().Index, Gw: gw}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// firstNIC returns eth0, or else the first Ethernet device, waiting up to
// timeout for one to appear (a driver loaded as a module probes late).
func firstNIC(timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l, err := netlink.LinkByName("eth0"); err == nil {
			return l, nil
		}
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			if l.Type() == "device" && len(l.Attrs().HardwareAddr) == 6 {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no network interface")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
