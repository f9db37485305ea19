package machine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/devbox-dev/devbox/guest/bootconfig"
	"github.com/devbox-dev/devbox/hypervisor"
	"github.com/devbox-dev/devbox/internal/filelock"
)

// Down stops the machine's VM: the agent shuts the guest down cleanly
// (processes ended, disk synced and unmounted), then the driver makes sure
// the VM process is gone. It says whether there was anything to stop.
func (m *Machine) Down(ctx context.Context) (bool, error) {
	if !m.exists || m.Config.Driver == DriverNative {
		return false, nil
	}
	lock, err := filelock.Acquire(ctx, m.path(lockFile))
	if err != nil {
		return false, err
	}
	defer lock.Unlock()
	d, err := m.driver()
	if err != nil {
		return false, err
	}
	if st, _ := d.State(ctx); st != hypervisor.Running {
		os.Remove(m.path(stateFile))
		return false, nil
	}
	m.shutdownGuest(ctx, d)
	if err := d.Stop(ctx); err != nil {
		return true, fmt.Errorf("machine %s: %w", m.Name, err)
	}
	os.Remove(m.path(stateFile))
	return true, nil
}

// shutdownGuest asks the agent to power the guest off and waits for the VM
// process to end. Failure is not fatal: the driver stops the VM anyway.
func (m *Machine) shutdownGuest(ctx context.Context, d hypervisor.Driver) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	k, err := m.loadKeys()
	if err != nil {
		return
	}
	c, err := m.client(ctx, ctx, d, k)
	if err != nil {
		return
	}
	// A guest stuck in its shutdown never replies: bounded by ctx.
	replied := make(chan bool, 1)
	go func() {
		ok, _, err := c.SendRequest(bootconfig.RequestShutdown, true, nil)
		replied <- err == nil && ok
	}()
	var ok bool
	select {
	case ok = <-replied:
	case <-ctx.Done():
	}
	c.Close()
	if !ok {
		return
	}
	for ctx.Err() == nil && d.PID() != 0 {
		time.Sleep(20 * time.Millisecond)
	}
}

// Destroy stops the machine and deletes it: disk, keys, logs.
func (m *Machine) Destroy(ctx context.Context) error {
	if m.exists && m.Config.Driver != DriverNative {
		if d, err := m.driver(); err == nil {
			if st, _ := d.State(ctx); st == hypervisor.Running {
				if _, err := m.Down(ctx); err != nil {
					return err
				}
			}
		}
	}
	if err := os.RemoveAll(m.Dir); err != nil {
		return fmt.Errorf("destroy machine %s: %w", m.Name, err)
	}
	m.exists = false
	m.Config = Config{}
	return nil
}

// Status is what `devbox status` shows.
type Status struct {
	Name            string    `json:"name"`
	Driver          string    `json:"driver"`
	State           string    `json:"state"`
	Accelerator     string    `json:"accelerator,omitempty"`
	AcceleratorNote string    `json:"acceleratorNote,omitempty"`
	CPUs            int       `json:"cpus,omitempty"`
	MemoryMiB       int       `json:"memoryMiB,omitempty"`
	DiskBytes       int64     `json:"diskBytes,omitempty"`
	DiskUsedBytes   int64     `json:"diskUsedBytes,omitempty"`
	PID             int       `json:"pid,omitempty"`
	Booted          time.Time `json:"booted,omitzero"`
	// Shares are the shared host directories; while the VM runs, each
	// says how it is shared.
	Shares []Share `json:"shares,omitempty"`
	Dir    string  `json:"dir"`
}

// Status reports the machine's driver and state, checking the VM process
// itself.
func (m *Machine) Status(ctx context.Context) (*Status, error) {
	s := &Status{Name: m.Name, Driver: m.Config.Driver, Dir: m.Dir}
	if !m.exists {
		s.Driver = DefaultDriver()
		s.State = "not created"
		if s.Driver == DriverNative {
			s.State = string(hypervisor.Running)
		}
		return s, nil
	}
	if m.Config.Driver == DriverNative {
		s.State = string(hypervisor.Running)
		return s, nil
	}
	d, err := m.driver()
	if err != nil {
		return nil, err
	}
	caps := d.Capabilities()
	s.Accelerator, s.AcceleratorNote = caps.Accelerator, caps.AcceleratorNote
	s.CPUs, s.MemoryMiB, s.DiskBytes = m.Config.CPUs, m.Config.MemoryMiB, m.Config.DiskBytes
	s.DiskUsedBytes = diskUsage(m.path(diskFile))
	// What the guest has, not what machine.json asks for: the two
	// differ until a grown size is applied at the next boot.
	if n, err := d.DiskSize(m.path(diskFile)); err == nil {
		s.DiskBytes = n
	}
	s.Shares = m.Shares()
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	s.State = string(st)
	if st == hypervisor.Running {
		s.PID = d.PID()
		if bs, err := m.loadState(); err == nil {
			s.Booted = bs.Booted
			for i := range s.Shares {
				for _, b := range bs.Shares {
					if b.Path == filepath.ToSlash(s.Shares[i].Path) {
						s.Shares[i].Type = b.Type
					}
				}
			}
		}
	}
	return s, nil
}

// ConsoleLog is the path of the VM's console log.
func (m *Machine) ConsoleLog() (string, error) {
	d, err := m.driver()
	if err != nil {
		return "", err
	}
	return d.ConsoleLog(), nil
}
