//go:build !linux

package qemu

import (
	"context"
	"errors"
	"fmt"

	"github.com/devbox-dev/devbox/hypervisor"
)

// findVirtiofsd: virtiofsd is a Linux program; elsewhere QEMU shares by 9p.
func findVirtiofsd() (string, error) { return virtiofsdPath() }

func virtiofsdPath() (string, error) { return "", errors.New("virtiofsd runs on Linux only") }

func (d *Driver) virtiofsSocket(i int) string { return "" }

func (d *Driver) startVirtiofsd(ctx context.Context, shares []hypervisor.Share) error {
	for _, s := range shares {
		if s.Type == "virtiofs" {
			return fmt.Errorf("share %s: virtiofs needs virtiofsd, which runs on Linux only", s.HostPath)
		}
	}
	return nil
}

func (d *Driver) stopVirtiofsd() {}
