// Package bootconfig is the contract between the host and the devbox guest
// agent: what the host hands the guest at boot (a JSON file and keys in a
// small cpio archive appended to the guest's initramfs), and the names both
// sides use on the wire. Both sides import it, so they cannot drift apart.
package bootconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Files the host places in the guest's initramfs overlay.
const (
	// Path holds the Config as JSON.
	Path = "/etc/devbox/boot.json"
	// HostKeyPath holds the guest's SSH host key (OpenSSH PEM, ed25519),
	// generated on the host so the host can pin its public half.
	HostKeyPath = "/etc/devbox/ssh_host_ed25519_key"
	// SeedPath holds random bytes the agent mixes into the guest's RNG
	// before anything needs entropy.
	SeedPath = "/etc/devbox/random-seed"
)

// ReadyLine is what the agent writes to the console once it serves SSH; a
// person reading the serial log can see how far boot got.
const ReadyLine = "devbox-agent: ready"

// The hello exchange opens every agent stream, before any SSH bytes. The
// host writes HostHello, a nonce and a newline; the agent answers Hello,
// the same nonce and a newline; then SSH runs. The host drops anything
// before its own nonce comes back, so bytes of an earlier session still in
// flight cannot confuse it. On virtio-serial a quick reconnect can hide a
// disconnect from the guest, so the agent also watches the stream of a
// running session for HostHello: seeing it means the host has started
// over, and the agent ends that session and answers the new hello.
const (
	HostHello = "DEVBOX-HOST-HELLO "
	Hello     = "DEVBOX-AGENT-HELLO "
)

// HostHelloLine is the line the host opens a stream with.
func HostHelloLine(nonce string) string { return HostHello + nonce + "\n" }

// HelloLine is the agent's answer to HostHelloLine(nonce).
func HelloLine(nonce string) string { return Hello + nonce + "\n" }

// User is the account SSH logs in as in the guest.
const User = "root"

// SSH global requests the host sends the agent.
const (
	// RequestSetTime carries SetTime; the agent sets the guest's clock.
	// The host sends it on every connection, so a guest that slept with
	// its host catches up.
	RequestSetTime = "set-time@devbox"
	// RequestShutdown asks the agent to stop everything, sync and unmount
	// the data disk, reply, then power off.
	RequestShutdown = "shutdown@devbox"
)

// SetTime is the payload of RequestSetTime (encode with ssh.Marshal).
type SetTime struct {
	UnixNano uint64
}

// Transports the agent can serve SSH on.
const (
	TransportVirtioSerial = "virtio-serial"
	TransportVsock        = "vsock"
)

// PortName is the name of the i-th virtio-serial port the agent serves SSH
// on (under /sys/class/virtio-ports/*/name in the guest). Each port carries
// one SSH connection at a time; several ports let several host commands
// talk to the agent at once.
func PortName(i int) string { return fmt.Sprintf("devbox.agent.%d", i) }

// Config is what the agent needs to know at boot.
type Config struct {
	// Hostname of the guest.
	Hostname string `json:"hostname"`
	// AuthorizedKeys are public keys, in authorized_keys format, allowed
	// to log in as User.
	AuthorizedKeys []string `json:"authorizedKeys"`
	// Time is the host's clock when it wrote this file (Unix ns): a floor
	// for the guest clock until the host sends RequestSetTime.
	Time int64 `json:"time"`
	// Network is the static IPv4 set-up of the first NIC; nil leaves
	// networking down.
	Network *Network `json:"network,omitempty"`
	// DataDisk is the block device holding the persistent data (e.g.
	// /dev/vda). The agent formats it ext4 when it holds no filesystem and
	// mounts it at DataRoot.
	DataDisk string `json:"dataDisk,omitempty"`
	// DataRoot is where DataDisk is mounted: devbox's data root.
	DataRoot string `json:"dataRoot"`
	// Transport is TransportVirtioSerial or TransportVsock.
	Transport string `json:"transport"`
	// Ports is how many virtio-serial ports (PortName(0..Ports-1)) carry
	// the agent's SSH.
	Ports int `json:"ports,omitempty"`
	// VsockPort is the vsock port the agent listens on.
	VsockPort uint32 `json:"vsockPort,omitempty"`
	// Shares are host directories the agent mounts before it serves any
	// SSH channel, so no command or container sees one unmounted.
	Shares []Share `json:"shares,omitempty"`
}

// Share is a host directory the guest mounts at the same path, so a host
// path (a bind mount's source, a working directory) means the same file
// on both sides.
type Share struct {
	// Tag names the device the host exports the directory on (the 9p
	// mount_tag or the virtiofs tag).
	Tag string `json:"tag"`
	// Path is the guest mount point: the host directory's own path.
	Path string `json:"path"`
	// Type is ShareType9P or ShareTypeVirtiofs.
	Type string `json:"type"`
	// ReadOnly mounts the share read-only in the guest.
	ReadOnly bool `json:"readOnly,omitempty"`
}

// Share types (Share.Type).
const (
	ShareType9P       = "9p"
	ShareTypeVirtiofs = "virtiofs"
)

// Network is a static IPv4 configuration, as QEMU's user network wants.
type Network struct {
	Address string   `json:"address"` // CIDR, e.g. 10.0.2.15/24
	Gateway string   `json:"gateway"` // e.g. 10.0.2.2
	DNS     []string `json:"dns"`     // e.g. 10.0.2.3
	// HostLoopback is an address that reaches the host's own loopback
	// (QEMU's user network maps its gateway there); empty when the
	// network has none, and the host's loopback is reached through the
	// agent connection instead.
	HostLoopback string `json:"hostLoopback,omitempty"`
}

// QEMUUserNetwork is the static configuration for QEMU's user (slirp)
// network with its default addresses.
func QEMUUserNetwork() *Network {
	return &Network{Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}, HostLoopback: "10.0.2.2"}
}

// Load reads the Config at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("boot config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("boot config %s: %w", path, err)
	}
	return &c, nil
}

// Marshal encodes c for Path.
func (c *Config) Marshal() ([]byte, error) {
	return json.MarshalIndent(c, "", "  ")
}

// TimeFloor is c.Time as a time.Time.
func (c *Config) TimeFloor() time.Time { return time.Unix(0, c.Time) }
