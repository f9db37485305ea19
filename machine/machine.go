// Package machine is devbox's VM as the user knows it: created at the first
// `devbox up`, booted through a hypervisor driver, reached over SSH through
// the guest agent, stopped by `devbox down`. Its state lives in one
// directory, $DEVBOX_HOME/machines/NAME, readable by the user only.
package machine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/devbox-dev/devbox/config"
	"github.com/devbox-dev/devbox/guest/bootconfig"
)

// DefaultName is the machine devbox uses unless told otherwise.
const DefaultName = "default"

// Drivers a machine can use.
const (
	DriverNative = "native"
	DriverQEMU   = "qemu"
	DriverVZ     = "vz"
)

// Defaults for a new machine.
const (
	DefaultCPUs      = 2
	DefaultMemoryMiB = 2048
	DefaultDiskBytes = 64 << 30
)

// Files in the machine directory.
const (
	configFile  = "machine.json"
	stateFile   = "state.json"
	lockFile    = "machine.lock"
	diskFile    = "data.qcow2"
	initrdFile  = "initrd"
	clientKey   = "id_ed25519"
	hostKey     = "ssh_host_ed25519_key"
	knownHosts  = "known_hosts"
	portLockFmt = "agent-%d.lock"
)

// Config is a machine's settings, kept in machine.json.
type Config struct {
	Driver    string `json:"driver"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memoryMiB"`
	DiskBytes int64  `json:"diskBytes"`
	// GuestImage is the guest image directory chosen with --guest-image;
	// empty searches the usual places.
	GuestImage string `json:"guestImage,omitempty"`
	// Accel forces a QEMU accelerator ("tcg"); empty picks the fastest.
	Accel string `json:"accel,omitempty"`
	// Shares are the host directories the guest mounts at the same
	// paths; nil (a machine from before shares) means the default, the
	// user's home directory.
	Shares  []Share   `json:"shares"`
	Created time.Time `json:"created"`
}

// state is what a running machine's boot left behind, in state.json.
type state struct {
	Booted      time.Time `json:"booted"`
	GuestDigest string    `json:"guestDigest"`
	// Shares are the shares the guest was booted with, and how.
	Shares []bootconfig.Share `json:"shares,omitempty"`
}

// Machine is one VM's directory and settings.
type Machine struct {
	Name   string
	Dir    string
	Config Config
	// exists says whether Config came from disk.
	exists bool
}

// Open finds machine name under the devbox home. A machine that was never
// brought up has a zero Config and Exists() false.
func Open(name string) (*Machine, error) {
	home, err := config.Home()
	if err != nil {
		return nil, err
	}
	m := &Machine{Name: name, Dir: filepath.Join(home, "machines", name)}
	b, err := os.ReadFile(filepath.Join(m.Dir, configFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, fmt.Errorf("machine %s: %w", name, err)
	}
	if err := json.Unmarshal(b, &m.Config); err != nil {
		return nil, fmt.Errorf("machine %s: %s is corrupt (%v): remove it or run devbox destroy", name, filepath.Join(m.Dir, configFile), err)
	}
	m.exists = true
	return m, nil
}

// Exists says whether the machine was created.
func (m *Machine) Exists() bool { return m.exists }

func (m *Machine) path(name string) string { return filepath.Join(m.Dir, name) }

// saveConfig writes machine.json.
func (m *Machine) saveConfig() error {
	b, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(m.path(configFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("machine %s: %w", m.Name, err)
	}
	m.exists = true
	return nil
}

func (m *Machine) loadState() (state, error) {
	var s state
	b, err := os.ReadFile(m.path(stateFile))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (m *Machine) saveState(s state) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return writeFileAtomic(m.path(stateFile), b, 0o600)
}

// writeFileAtomic writes through a temp file and a rename, so a crash
// leaves the old file or the new one, never half of one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		os.Remove(tmp) // a disk that filled up leaves a partial file
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
