// Package hypervisor is what every VM driver implements and what the
// machine code needs of one: boot a Linux guest from a kernel and an
// initramfs, stop it, say whether it runs, and dial the guest agent. Drivers
// know nothing of containers or images.
package hypervisor

import (
	"context"
	"errors"
	"net"
)

// Config is the VM a driver boots. Where the driver keeps its sockets,
// pid file and logs is given when the driver is made.
type Config struct {
	// CPUs and MemoryMiB size the VM.
	CPUs      int
	MemoryMiB int
	// Kernel, Initramfs and Cmdline are what the guest boots.
	Kernel    string
	Initramfs string
	Cmdline   string
	// DataDisk is the persistent disk image, made by CreateDisk.
	DataDisk string
	// Shares are host directories the guest mounts.
	Shares []Share
}

// Share is a host directory shared into the guest under Tag.
type Share struct {
	Tag      string
	HostPath string
	ReadOnly bool
	// Type is how it is shared: one of the driver's
	// Capabilities.ShareTypes; empty means the first of them.
	Type string
}

// Capabilities say what a driver offers, as data the machine code reads.
type Capabilities struct {
	// Accelerator is what runs guest code: "kvm", "hvf", "whpx" or "tcg".
	Accelerator string
	// AcceleratorNote says why a faster accelerator is not used, if so.
	AcceleratorNote string
	// Transport is how the agent is reached (a bootconfig.Transport*).
	Transport string
	// AgentPorts is how many agent streams can be open at once; 0 means
	// no limit (each Dial is a new stream, as with vsock).
	AgentPorts int
	// DiskFormat is the data disk's format: "qcow2" or "raw".
	DiskFormat string
	// ShareTypes are the file-sharing mechanisms available, best first.
	ShareTypes []string
	// Console is the guest's console device, for the kernel command line.
	Console string
}

// State is whether a VM runs.
type State string

// States a driver reports.
const (
	Stopped State = "stopped"
	Running State = "running"
)

// Driver runs one machine's VM.
type Driver interface {
	// Name is the driver's name as users type it ("qemu", "vz").
	Name() string
	// Capabilities describes the driver on this host.
	Capabilities() Capabilities
	// Available says what is missing, with how to install it, when the
	// hypervisor cannot run on this host.
	Available() error
	// CreateDisk makes an empty, sparse data disk of size bytes at path.
	CreateDisk(ctx context.Context, path string, size int64) error
	// DiskSize is the size the guest sees of the data disk at path (a
	// qcow2's virtual size, a raw file's length), not the host space it
	// takes.
	DiskSize(path string) (int64, error)
	// ResizeDisk grows the data disk at path to size bytes (rounded up to
	// a whole 512-byte sector) while the VM is stopped; the guest grows
	// its file system at the next boot. It never shrinks a disk: a size
	// below the current one is an error. For a raw sparse file (vz) it
	// is a truncate to the larger length.
	ResizeDisk(ctx context.Context, path string, size int64) error
	// Start boots the VM and returns once its process runs; the guest
	// may still be booting. The VM outlives the calling process.
	Start(ctx context.Context, cfg Config) error
	// Stop ends the VM: politely through the hypervisor first, then by
	// force. The guest should have been shut down through its agent.
	Stop(ctx context.Context) error
	// State checks the VM process itself, not only files left behind.
	State(ctx context.Context) (State, error)
	// PID is the VM process, 0 when not running.
	PID() int
	// Dial opens agent stream i (0 <= i < AgentPorts, or any i when
	// AgentPorts is 0).
	Dial(ctx context.Context, i int) (net.Conn, error)
	// ConsoleLog is the path of the guest console log.
	ConsoleLog() string
	// Log is the path of the hypervisor's own output.
	Log() string
}

// ErrNotInstalled is wrapped by drivers whose hypervisor is missing.
var ErrNotInstalled = errors.New("hypervisor not installed")
